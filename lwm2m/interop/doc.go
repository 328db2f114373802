// Package interop holds interoperability tests (test files only): the
// FlowNexus LwM2M server (lwm2m/server) against independent implementations
// installed from package registries — libcoap's command-line client (the
// Debian package libcoap3-bin) for raw registration and block-wise
// transfers to the server, and for reading, block-wise reading and
// observing our client engine (lwm2m/client) from the other side; and the
// npm package lwm2m-node-lib, an LwM2M 1.0 client, for register, read,
// write, execute, observe and de-register.
//
// The tests use the tools when they are installed and skip loudly
// otherwise; with CI=true a missing tool fails the test. CI installs them
// with `apt-get install libcoap3-bin nodejs npm` and `npm ci` in
// testdata/node. Nothing here is imported by the product.
package interop
