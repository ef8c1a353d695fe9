"""The network driver: Linux bridges, veth pairs, persistent IPAM and
nftables rules (through libnftables) in berth's own tables. driver.Driver
is what the engine plugs into container start/stop."""
