data "hsw_gpus" "this" {}

output "gpu_backend" {
  # "nvml" on a GPU host, "simulated" elsewhere (with gpu_backend = "auto").
  value = data.hsw_gpus.this.backend
}

output "mig_profiles" {
  value = [for p in data.hsw_gpus.this.devices[0].profiles : p.name]
}
