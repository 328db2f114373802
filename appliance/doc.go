// Package appliance is the composition root: configuration, wiring of the
// LwM2M server, store, firmware and web UI, the device lifecycle rules and the
// operation dispatcher, the PKI, systemd integration, self-update and
// backup/restore. Only cmd/* imports it.
package appliance
