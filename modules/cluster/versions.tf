terraform {
  required_version = ">= 1.0"

  required_providers {
    hsw = {
      source = "registry.terraform.io/hyperscaler/hsw"
    }
  }
}
