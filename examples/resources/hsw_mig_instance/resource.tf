# Two MIG instances on one A100 80GB, at the placements `hsw-cli gpu plan` chose.
resource "hsw_mig_instance" "hpc" {
  gpu             = "0000:41:00.0" # or the index ("0") or the UUID ("GPU-...")
  profile         = "3g.40gb"
  placement_start = 0
}

resource "hsw_mig_instance" "cloud" {
  gpu             = "0000:41:00.0"
  profile         = "2g.20gb"
  placement_start = 4
  compute_profile = "1c" # default: the whole GPU instance
}

output "hpc_mig_device" {
  value = hsw_mig_instance.hpc.mig_device_uuid
}
