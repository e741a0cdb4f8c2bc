'use strict'
// regiondb's entry point for dynalite, the local DynamoDB stand-in.
//
//   node dynalite-server.js DYNALITE_DIR HOST PORT DATA_DIR
//
// dynalite 4.0.0 ends its whole process when one client misbehaves: its
// request handler does `req.on('error', function (err) { throw err })`, so a
// request its client aborts (a cancelled context: "Error: aborted",
// ECONNRESET) throws out of an event listener, and a body such as `null`
// throws a TypeError out of its 'end' listener. This script runs dynalite as
// a library and contains both per request: an aborted request is dropped, a
// request dynalite throws on gets a 500 (InternalServerError, which the AWS
// SDKs retry). dynalite itself is not modified. Errors dynalite throws from
// its storage callbacks are not caught: they are not a client's doing, and the
// stack reports the death.
//
// The data lives in DATA_DIR (LevelDB), so a restarted server has every item
// it had acknowledged.

const [dynaliteDir, host, port, dataDir] = process.argv.slice(2)
if (!dynaliteDir || !host || !port || !dataDir) {
  console.error('usage: node dynalite-server.js DYNALITE_DIR HOST PORT DATA_DIR')
  process.exit(2)
}

const dynalite = require(dynaliteDir)
const server = dynalite({ path: dataDir, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })

// Contained failures, counted and logged at most once a second so that a
// flood of aborted requests does not flood the log.
const contained = { aborted: 0, thrown: 0 }
let lastReport = 0
function report (what, err) {
  contained[what]++
  const now = Date.now()
  if (now - lastReport >= 1000) {
    lastReport = now
    console.error('dynalite-server: contained %s request (%s); so far aborted=%d thrown=%d',
      what, err && (err.code || err.message), contained.aborted, contained.thrown)
  }
}

const handlers = server.listeners('request')
server.removeAllListeners('request')
server.on('request', function (req, res) {
  function fail (err) {
    report('thrown', err)
    if (res.headersSent || res.writableEnded || req.destroyed) {
      res.destroy()
      return
    }
    const body = JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: 'dynalite: ' + String(err && err.message) })
    res.statusCode = 500
    res.setHeader('Content-Type', 'application/x-amz-json-1.0')
    res.setHeader('Content-Length', Buffer.byteLength(body))
    res.end(body)
  }
  function guard (listener) {
    return function () {
      try {
        return listener.apply(this, arguments)
      }
      catch (err) {
        fail(err)
      }
    }
  }
  // Writing to a response whose socket is gone must not end the process either.
  res.on('error', function () {})
  // dynalite registers its request listeners synchronously inside the
  // handler: swap its rethrowing 'error' listener for one that drops the
  // request, and guard the others.
  req.on = function (event, listener) {
    if (event === 'error') {
      return Object.getPrototypeOf(req).on.call(req, 'error', function (err) {
        report('aborted', err)
        res.destroy()
      })
    }
    return Object.getPrototypeOf(req).on.call(req, event, guard(listener))
  }
  try {
    for (const h of handlers) h.call(server, req, res)
  }
  catch (err) {
    fail(err)
  }
  finally {
    delete req.on
  }
})

// A malformed request line or headers: answer 400 if possible, never throw.
server.on('clientError', function (err, socket) {
  if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
  else socket.destroy()
})

server.listen(Number(port), host, function () {
  console.log('dynalite-server: listening at http://%s:%s, data in %s', host, port, dataDir)
})

// SIGTERM (the stack's stop) closes LevelDB cleanly; SIGKILL loses nothing
// either, as every acknowledged write is already in the operating system.
process.on('SIGTERM', function () {
  server.close(function () { process.exit(0) })
  setTimeout(function () { process.exit(0) }, 2000).unref()
})
