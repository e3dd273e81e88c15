data "hsw_host" "this" {}

output "accelerator" {
  # "kvm" where KVM can run guests, else "tcg".
  value = data.hsw_host.this.auto_accelerator
}
