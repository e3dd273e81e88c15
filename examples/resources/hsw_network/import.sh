# A network can be imported by its libvirt name or UUID.
terraform import hsw_network.cluster hsw-cluster
terraform import hsw_network.cluster 8cf7c55f-3140-4284-9bcb-c84c5aa7b711
