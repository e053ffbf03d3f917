// bench/http/httpbench.mjs -- the HTTP API benchmark's measuring program (bench/http.sh runs it).
//
//   node httpbench.mjs parked   N long-poll requests parked at once on one shape: ferryd's RSS
//                               before and after, per parked request; beside it the bytes of
//                               the request itself (what any server must at least keep).
//   node httpbench.mjs latency  C clients (one tenant and shape each) in long-poll loops, a
//                               writer committing single-row transactions round robin at R/s:
//                               commit acknowledgement -> row in an HTTP answer, p50/p99; beside
//                               it the same rows seen by pg_recvlogical (test_decoding), the
//                               earliest any client of the WAL can see them.
//
// Prints key=value lines. Environment: FERRYD_URL, FERRYD_PID, SECRET_CMD (a command that
// prints a token for SUB:TENANT), BENCH_PARKED, BENCH_HTTP_CLIENTS, BENCH_HTTP_RATE,
// BENCH_HTTP_SECONDS, PG* (psql, pg_recvlogical), BENCH_SLOT.
import net from 'node:net'
import http from 'node:http'
import fs from 'node:fs'
import { spawn, execFileSync } from 'node:child_process'

const url = new URL(process.env.FERRYD_URL)
const out = (k, v) => console.log(`${k}=${v}`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const token = (spec) => execFileSync('sh', ['-c', `${process.env.SECRET_CMD} ${spec}`], { encoding: 'utf8' }).trim()
const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${process.env.FERRYD_PID}/status`, 'utf8'))[1])
const metric = async (name) => {
  const m = await (await fetch(url.origin + '/metrics')).text()
  const x = new RegExp(`^${name} (\\d+)`, 'm').exec(m)
  return x ? Number(x[1]) : NaN
}
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor((a.length * p) / 100))]

async function first(q, tok) {
  const res = await fetch(`${url.origin}/v1/shape?${q}&offset=-1`, { headers: { authorization: `Bearer ${tok}` } })
  await res.text()
  return { handle: res.headers.get('electric-handle'), offset: res.headers.get('electric-offset') }
}

async function parked() {
  const n = Number(process.env.BENCH_PARKED || 10000)
  const tok = token('bench:p0')
  const { handle, offset } = await first('table=bench_items', tok)
  // warm up the paths a parked request takes, then measure
  for (let i = 0; i < 3; i++) await first('table=bench_items', tok)
  await sleep(500)
  const before = rssKb()
  const req = `GET /v1/shape?table=bench_items&offset=${offset}&handle=${handle}&live=true&cursor=1 HTTP/1.1\r\n` +
    `Host: ${url.host}\r\nAuthorization: Bearer ${tok}\r\nUser-Agent: httpbench\r\nAccept: */*\r\n\r\n`
  const socks = []
  let answered = 0
  const t0 = Date.now()
  for (let i = 0; i < n; i++) {
    const s = net.connect(Number(url.port), url.hostname)
    s.on('error', () => {})
    s.on('data', () => answered++)
    s.write(req)
    socks.push(s)
    if (i % 500 === 499) await sleep(20)
  }
  let p = 0
  for (let i = 0; i < 300; i++) {
    p = await metric('ferry_http_parked')
    if (p >= n) break
    await sleep(50)
  }
  const after = rssKb()
  out('parked.requests', n)
  out('parked.parked', p)
  out('parked.answered_early', answered)
  out('parked.open_seconds', ((Date.now() - t0) / 1000).toFixed(2))
  out('parked.rss_kb_before', before)
  out('parked.rss_kb_after', after)
  out('parked.bytes_each', Math.round(((after - before) * 1024) / Math.max(1, p)))
  out('parked.request_bytes', Buffer.byteLength(req))
  for (const s of socks) s.destroy()
  await sleep(3000)
  out('parked.after_close', await metric('ferry_http_parked'))
}

async function latency() {
  const clients = Number(process.env.BENCH_HTTP_CLIENTS || 200)
  const rate = Number(process.env.BENCH_HTTP_RATE || 200)
  const seconds = Number(process.env.BENCH_HTTP_SECONDS || 10)
  const recvAt = new Map() // id -> ms, HTTP clients
  const walAt = new Map() // id -> ms, pg_recvlogical
  const ackAt = new Map() // id -> ms, the writer's commit acknowledgement
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients + 10 })
  let stop = false
  let errors = 0
  let ready = 0 // clients that have their shape's initial rows

  // the limit: a bare logical decoding client of the same WAL
  const slot = process.env.BENCH_SLOT || 'ferry_bench_http_lat'
  execFileSync('pg_recvlogical', ['-d', process.env.PGDATABASE, '--slot', slot, '--create-slot', '-P', 'test_decoding'])
  const recv = spawn('pg_recvlogical', ['-d', process.env.PGDATABASE, '--slot', slot, '--start', '-f', '-', '-F', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let buf = ''
  recv.stdout.on('data', (d) => {
    const now = performance.timeOrigin + performance.now()
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const m = /bench_lat: INSERT: id\[bigint\]:(\d+)/.exec(line)
      if (m && !walAt.has(Number(m[1]))) walAt.set(Number(m[1]), now)
    }
  })

  function get(path, tok) {
    return new Promise((resolve, reject) => {
      const r = http.get({ host: url.hostname, port: url.port, path, agent, headers: { authorization: `Bearer ${tok}` } }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, at: performance.timeOrigin + performance.now() }))
      })
      r.on('error', reject)
    })
  }
  async function client(i) {
    const tok = token(`bench${i}:t${i}`)
    let r = await get('/v1/shape?table=bench_lat&offset=-1', tok)
    let handle = r.headers['electric-handle']
    let offset = r.headers['electric-offset']
    let cursor = 0
    ready++
    while (!stop) {
      try {
        r = await get(`/v1/shape?table=bench_lat&offset=${offset}&handle=${handle}&live=true&cursor=${cursor}`, tok)
      } catch {
        errors++
        await sleep(100)
        continue
      }
      if (r.status !== 200) {
        errors++
        await sleep(100)
        continue
      }
      offset = r.headers['electric-offset']
      cursor = r.headers['electric-cursor'] || cursor
      for (const m of JSON.parse(r.body)) {
        if (m.headers.operation === 'insert') {
          const id = Number(m.value.id)
          if (!recvAt.has(id)) recvAt.set(id, r.at)
        }
      }
    }
  }
  const running = []
  for (let i = 0; i < clients; i++) running.push(client(i))
  // every client has its shape (snapshots done) and is parked
  for (let i = 0; i < 1200 && ready < clients; i++) await sleep(50)
  out('lat.ready_clients', ready)
  await sleep(1000)

  // the writer: psql reading statements, an ack line after each commit
  const psql = spawn('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1'], { stdio: ['pipe', 'pipe', 'inherit'] })
  let pbuf = ''
  psql.stdout.on('data', (d) => {
    const now = performance.timeOrigin + performance.now()
    pbuf += d
    let i
    while ((i = pbuf.indexOf('\n')) >= 0) {
      const line = pbuf.slice(0, i)
      pbuf = pbuf.slice(i + 1)
      if (line.startsWith('ack ')) ackAt.set(Number(line.slice(4)), now)
    }
  })
  const total = rate * seconds
  const tStart = performance.now()
  for (let id = 1; id <= total; id++) {
    const due = tStart + ((id - 1) * 1000) / rate
    const wait = due - performance.now()
    if (wait > 1) await sleep(wait)
    psql.stdin.write(`INSERT INTO bench_lat (id, ws, v) VALUES (${id}, 't${id % clients}', ${id}); SELECT 'ack ${id}';\n`)
  }
  const achieved = total / ((performance.now() - tStart) / 1000)
  psql.stdin.end()
  await new Promise((r) => psql.on('close', r))
  await sleep(3000)
  stop = true
  recv.kill('SIGTERM')

  const lat = []
  const wal = []
  let missing = 0
  for (let id = 1; id <= total; id++) {
    const a = ackAt.get(id)
    if (a === undefined) continue
    if (recvAt.has(id)) lat.push(recvAt.get(id) - a)
    else missing++
    if (walAt.has(id)) wal.push(walAt.get(id) - a)
  }
  lat.sort((x, y) => x - y)
  wal.sort((x, y) => x - y)
  out('lat.clients', clients)
  out('lat.rate', rate)
  out('lat.achieved_rate', achieved.toFixed(0))
  out('lat.rows', lat.length)
  out('lat.missing', missing)
  out('lat.errors', errors)
  out('lat.p50_ms', pct(lat, 50).toFixed(2))
  out('lat.p99_ms', pct(lat, 99).toFixed(2))
  out('lat.max_ms', lat[lat.length - 1].toFixed(2))
  out('lat.wal_rows', wal.length)
  out('lat.wal_p50_ms', wal.length ? pct(wal, 50).toFixed(2) : '-')
  out('lat.wal_p99_ms', wal.length ? pct(wal, 99).toFixed(2) : '-')
  agent.destroy()
  process.exit(0)
}

if (process.argv[2] === 'parked') await parked()
else if (process.argv[2] === 'latency') await latency()
else {
  console.error('usage: httpbench.mjs parked|latency')
  process.exit(2)
}
process.exit(0)
