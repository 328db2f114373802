// Package simulation provides simulated LwM2M devices and fleets of them,
// built on the lwm2m client engine (lwm2m/client): objects 0 Security,
// 1 Server, 3 Device with realistic values, 3303 Temperature (a bounded
// random walk), 5 Firmware Update (its resources; the download behaviour
// comes with the OTA work), 20 Event Log, and 3313 Accelerometer as a
// multi-resource sensor for composite observations; queue-mode devices that
// sleep between uplinks.
//
// A Fleet runs thousands of devices from one process: one socket per
// device (so the server sees distinct peers, over several loopback source
// addresses when one runs out of ports), and a single shared ticker that
// moves every device's values, rather than a goroutine and timer per
// device. Everything random comes from a seed, so a run can be repeated.
//
// It imports only lwm2m and its subpackages; it holds no policy of the
// appliance and never talks to anything but the server it is given.
package simulation
