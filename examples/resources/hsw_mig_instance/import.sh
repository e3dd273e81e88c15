# A MIG instance is imported by `<GPU PCI address>/<GPU instance id>` (see `nvidia-smi mig -lgi`).
terraform import hsw_mig_instance.hpc 0000:41:00.0/1
