// Runs MQTT.js clients on command, for test/integration/test_74_interop_mqttjs.py. Shared by the
// Node runner (mqttjs_node.js: commands on stdin, events on stdout, MQTT over TCP) and the
// browser page (mqttjs_browser.html: commands and events over HTTP, MQTT over WebSocket).
//
// A command is {id, op, name, ...}; every command gets one {ev: "reply", id, ok, ...} event once
// it completed (CONNACK, SUBACK, PUBACK/PUBCOMP, ...) or failed. Other events: "message",
// "disconnect" (a DISCONNECT from the broker), "close", "error". Binary data travels as hex.
//   connect     {name, url, options}          options as for mqtt.connect (will.payload_hex)
//   subscribe   {name, topic, opts}           opts: {qos, nl, rap, rh, properties}
//   unsubscribe {name, topic}
//   publish     {name, topic, payload_hex, opts}  opts: {qos, retain, properties}
//                                             (properties.correlationData_hex for binary data);
//                                             the reply lists the broker's acks ("acks")
//   end         {name, force, opts}           force: drop the connection without DISCONNECT
(function (root) {
  'use strict'

  function toHex (u8) {
    let s = ''
    for (let i = 0; i < u8.length; i++) s += (u8[i] < 16 ? '0' : '') + u8[i].toString(16)
    return s
  }

  function fromHex (hex) {
    const out = new Uint8Array(hex.length / 2)
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16)
    return out
  }

  // Buffers / Uint8Arrays become {hex: ...}; everything else is kept as JSON can carry it.
  function plain (v) {
    if (v instanceof Uint8Array) return { hex: toHex(v) }
    if (Array.isArray(v)) return v.map(plain)
    if (v && typeof v === 'object') {
      const out = {}
      for (const k of Object.keys(v)) out[k] = plain(v[k])
      return out
    }
    return v
  }

  function withBinary (opts, makeBuffer) {
    const props = opts && opts.properties
    if (props && props.correlationData_hex !== undefined) {
      props.correlationData = makeBuffer(props.correlationData_hex)
      delete props.correlationData_hex
    }
    return opts
  }

  function createDriver (mqtt, emit, makeBuffer) {
    makeBuffer = makeBuffer || fromHex
    const clients = {}
    const acks = {} // client name -> message id -> the broker's PUBACK / PUBREC / PUBCOMP

    function watch (name, c) {
      acks[name] = {}
      c.on('packetreceive', (packet) => {
        if (packet.cmd === 'puback' || packet.cmd === 'pubrec' || packet.cmd === 'pubcomp') {
          const list = acks[name][packet.messageId] = acks[name][packet.messageId] || []
          list.push({ cmd: packet.cmd, reasonCode: packet.reasonCode, properties: plain(packet.properties || {}) })
        }
      })
      c.on('message', (topic, payload, packet) => emit({
        ev: 'message',
        client: name,
        topic,
        payload_hex: toHex(payload),
        qos: packet.qos,
        retain: !!packet.retain,
        dup: !!packet.dup,
        properties: plain(packet.properties || {})
      }))
      c.on('disconnect', (packet) => emit({
        ev: 'disconnect', client: name, reasonCode: packet.reasonCode, properties: plain(packet.properties || {})
      }))
      c.on('close', () => emit({ ev: 'close', client: name }))
      c.on('error', (e) => emit({ ev: 'error', client: name, error: String(e && e.message), code: e && e.code }))
    }

    function get (name) {
      const c = clients[name]
      if (!c) throw new Error('no client ' + name)
      return c
    }

    async function run (cmd) {
      switch (cmd.op) {
        case 'connect': {
          const opts = Object.assign({ reconnectPeriod: 0, connectTimeout: 10000 }, cmd.options || {})
          if (opts.will && opts.will.payload_hex !== undefined) {
            opts.will.payload = makeBuffer(opts.will.payload_hex)
            delete opts.will.payload_hex
          }
          if (opts.will) withBinary(opts.will, makeBuffer)
          const c = mqtt.connect(cmd.url, opts)
          clients[cmd.name] = c
          watch(cmd.name, c)
          return await new Promise((resolve, reject) => {
            c.once('connect', (connack) => resolve({ connack: plain(connack) }))
            c.once('error', (e) => reject(e))
            c.once('close', () => reject(new Error('connection closed before CONNACK')))
          })
        }
        case 'subscribe': {
          const granted = await get(cmd.name).subscribeAsync(cmd.topic, cmd.opts || { qos: 0 })
          return { granted: plain(granted) }
        }
        case 'unsubscribe': {
          const packet = await get(cmd.name).unsubscribeAsync(cmd.topic)
          return { packet: plain(packet || {}) }
        }
        case 'publish': {
          const opts = withBinary(cmd.opts || {}, makeBuffer)
          const payload = makeBuffer(cmd.payload_hex || '')
          const sent = await get(cmd.name).publishAsync(cmd.topic, payload, opts)
          const mid = sent && sent.messageId
          const got = (mid !== undefined && acks[cmd.name][mid]) || []
          if (mid !== undefined) delete acks[cmd.name][mid]
          return { acks: got, messageId: mid }
        }
        case 'end': {
          await get(cmd.name).endAsync(!!cmd.force, cmd.opts || {})
          return {}
        }
        default:
          throw new Error('unknown op ' + cmd.op)
      }
    }

    return function handle (cmd) {
      Promise.resolve().then(() => run(cmd)).then(
        (r) => emit(Object.assign({ ev: 'reply', id: cmd.id, ok: true }, r)),
        (e) => emit({ ev: 'reply', id: cmd.id, ok: false, error: String(e && e.message), code: e && e.code }))
    }
  }

  const api = { createDriver, toHex, fromHex }
  if (typeof module !== 'undefined' && module.exports) module.exports = api
  else root.mqttjsDriver = api
})(typeof self !== 'undefined' ? self : this)
