# An mdev is imported by its UUID; a vendor VFIO vGPU by its VF's PCI address.
terraform import hsw_mdev.worker c2177883-f1bb-47f0-914d-32a22e3a8804
terraform import hsw_mdev.h200 0000:c1:00.4
