'use strict';
// An LwM2M 1.0 device made with lwm2m-node-lib, driven by the Go test in
// lwm2m/interop over stdin/stdout, one JSON object per line.
//
// Usage: node client.js HOST PORT ENDPOINT
// Prints {"event":"registered","location":…} once registered, then one
// line per operation the server performs ({"event":"read"|"write"|
// "execute",…}). Reads commands on stdin: "set OBJ/INST RES VALUE" changes
// a value (observers get a notification), "deregister" de-registers and
// exits.

const readline = require('readline');
const lib = require('lwm2m-node-lib');
const client = lib.client;

const [host, port, endpoint] = process.argv.slice(2);
if (!host || !port || !endpoint) {
    process.stderr.write('usage: node client.js HOST PORT ENDPOINT\n');
    process.exit(2);
}

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(step, err) {
    emit({ event: 'error', step: step, error: String(err && (err.message || err.name) || err) });
    process.exit(1);
}

const config = {
    client: {
        lifetime: '120',
        version: '1.0',
        logLevel: 'FATAL',
        observe: { period: 3000 },
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{ name: 'lightweightm2m/text', value: 1541 }],
        writeFormat: 'lightweightm2m/text'
    }
};

function step(fn) {
    return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

async function main() {
    client.init(config);
    await step((cb) => client.registry.create('/3/0', cb));
    await step((cb) => client.registry.setResource('/3/0', '0', 'Node Labs', cb));
    await step((cb) => client.registry.setResource('/3/0', '1', 'node-1.0', cb));
    await step((cb) => client.registry.create('/3303/0', cb));
    await step((cb) => client.registry.setResource('/3303/0', '5700', '21.5', cb));
    await step((cb) => client.registry.setResource('/3303/0', '5701', 'Cel', cb));
    await step((cb) => client.registry.setResource('/3303/0', '5605', '', cb));

    const dev = await step((cb) => client.register(host, Number(port), '', endpoint, cb)).catch((err) => fail('register', err));

    client.setHandler(dev.serverInfo, 'read', (objectType, objectId, resourceId, value, cb) => {
        emit({ event: 'read', path: '/' + objectType + '/' + objectId + '/' + resourceId, value: String(value) });
        cb(null);
    });
    client.setHandler(dev.serverInfo, 'write', (objectType, objectId, resourceId, value, cb) => {
        emit({ event: 'write', path: '/' + objectType + '/' + objectId + '/' + resourceId, value: String(value) });
        cb(null);
    });
    client.setHandler(dev.serverInfo, 'execute', (objectType, objectId, resourceId, args, cb) => {
        emit({ event: 'execute', path: '/' + objectType + '/' + objectId + '/' + resourceId, args: String(args || '') });
        cb(null);
    });
    emit({ event: 'registered', location: dev.location });

    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', async (line) => {
        const parts = line.trim().split(/\s+/);
        try {
            if (parts[0] === 'set' && parts.length === 4) {
                await step((cb) => client.registry.setResource('/' + parts[1], parts[2], parts[3], cb));
                emit({ event: 'set', path: '/' + parts[1] + '/' + parts[2], value: parts[3] });
            } else if (parts[0] === 'deregister') {
                await step((cb) => client.unregister(dev, cb));
                emit({ event: 'deregistered' });
                process.exit(0);
            } else if (parts[0] !== '') {
                emit({ event: 'error', step: 'command', error: 'unknown command ' + line });
            }
        } catch (err) {
            fail(parts[0], err);
        }
    });
    rl.on('close', () => process.exit(0));
}

main().catch((err) => fail('setup', err));
