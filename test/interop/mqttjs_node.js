// MQTT.js in Node: reads JSON commands (one a line) on stdin and writes JSON events on stdout.
// See mqttjs_driver.js. MQTT.js is looked up through NODE_PATH or test/interop/node_modules.
'use strict'

const readline = require('readline')
const mqtt = require('mqtt')
const { createDriver } = require('./mqttjs_driver.js')

const emit = (ev) => process.stdout.write(JSON.stringify(ev) + '\n')
const handle = createDriver(mqtt, emit, (hex) => Buffer.from(hex, 'hex'))

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line.trim()) handle(JSON.parse(line))
})
rl.on('close', () => process.exit(0))
emit({ ev: 'ready', mqtt_version: require('mqtt/package.json').version })
