# A VM created by hsw can be imported by its libvirt name or UUID.
terraform import hsw_vm.controller controller
terraform import hsw_vm.controller da4ed37c-3157-4985-8ee4-42fa30a88613
