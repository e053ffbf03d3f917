// test/http/http_api_test.mjs -- ferryd's HTTP endpoints at the HTTP level: headers, caching,
// CORS, mutations, and bad input of every kind, each a clear 4xx while ferryd stays up.
import net from 'node:net'
import { randomUUID, createHmac } from 'node:crypto'
import { ok, is, done, url, tokenA, tokenB, sql, get, alive, until } from './lib.mjs'

const shape = (q, token = tokenA, extra) => get(`/v1/shape?${q}`, token, extra)
const code = (r) => r.json && r.json.code

// ---- a long-poll that nothing answers: started now, checked at the end (~20 s) ------------
const quietQ = `table=items&where=${encodeURIComponent('id < 0')}`
const quiet0 = await get(`/v1/shape?${quietQ}&offset=-1`, tokenA)
const quietStart = Date.now()
const quiet = get(`/v1/shape?${quietQ}&offset=${quiet0.headers.get('electric-offset')}` +
  `&handle=${quiet0.headers.get('electric-handle')}&live=true&cursor=7`, tokenA)

// ---- a first read ---------------------------------------------------------------------
let r = await shape('table=notes&offset=-1')
is(r.status, 200, 'GET /v1/shape offset=-1: 200')
const handle = r.headers.get('electric-handle')
const offset = r.headers.get('electric-offset')
ok(handle && /^[0-9a-f]+-\d+$/.test(handle), 'electric-handle header', handle)
ok(offset && /^\d+_\d+$/.test(offset), 'electric-offset header', offset)
ok(r.headers.has('electric-up-to-date'), 'electric-up-to-date header')
ok(r.headers.get('electric-schema').includes('"id":{"type":"int4","pk_index":0'), 'electric-schema header',
  r.headers.get('electric-schema'))
ok(/public/.test(r.headers.get('cache-control')) && /max-age=\d+/.test(r.headers.get('cache-control')),
  'a cacheable cache-control', r.headers.get('cache-control'))
ok(/authorization/i.test(r.headers.get('vary') || ''), 'vary: authorization (responses differ per token)')
is(r.headers.get('access-control-allow-origin'), '*', 'CORS: allow-origin')
ok(/electric-handle/.test(r.headers.get('access-control-expose-headers')), 'CORS: electric headers exposed')
is(r.json.length, 11, 'tenant a: 10 rows and an up-to-date message')
is(r.json[0].key, `"public"."notes"/"${r.json[0].value.id}"`, 'keys in Electric\'s format')
is(r.json[0].headers, { operation: 'insert', relation: ['public', 'notes'] }, 'change headers')
is(r.json[10].headers.control, 'up-to-date', 'the last message is up-to-date')
ok(r.json.slice(0, 10).every((m) => m.value.ws === 'a'), 'only tenant a\'s rows')

const etag = r.headers.get('etag')
r = await shape('table=notes&offset=-1', tokenA, { headers: { 'if-none-match': etag } })
is(r.status, 304, 'the same request with if-none-match: 304')

r = await shape(`table=notes&offset=now&handle=${handle}`)
is(r.status, 200, 'offset=now: 200')
is(r.json, [{ headers: { control: 'up-to-date', global_last_seen_lsn: r.json[0].headers.global_last_seen_lsn } }],
  'offset=now: only up-to-date')

r = await shape(`table=notes&offset=-1&where=${encodeURIComponent("body = 'x&y=z' or body = 'note 4'")}&cache-buster=1&unknown=2`)
is(r.status, 200, 'a where clause with & and = inside a literal, unknown parameters ignored')
is(r.json.filter((m) => m.value).map((m) => m.value.body), ['note 4'], '... and it filters right')

r = await shape(`table=notes&offset=-1&where=${encodeURIComponent('id > $1 and body <> $2')}&params%5B1%5D=15&params%5B2%5D=${encodeURIComponent("it's")}`)
is(r.json && r.json.filter((m) => m.value).map((m) => m.value.id), ['16', '18', '20'], 'params[n] replace $n as literals')

r = await shape('table=notes&offset=-1&columns=id,body')
is(r.json && Object.keys(r.json[0].value), ['id', 'body'], 'columns=id,body')

// ---- live ---------------------------------------------------------------------------------
r = await shape(`table=notes&offset=${offset}&handle=${handle}`)
is(r.status, 200, 'a caught-up non-live request: 200 at once')
let t0 = Date.now()
const live = shape(`table=notes&offset=${offset}&handle=${handle}&live=true&cursor=1`)
await new Promise((res) => setTimeout(res, 300))
sql("INSERT INTO notes (id, ws, body) VALUES (100, 'a', 'live')")
r = await live
is(r.status, 200, 'live: 200')
ok(Date.now() - t0 < 2000, `live: answered after the commit (${Date.now() - t0} ms)`)
is(r.json.map((m) => m.headers.operation || m.headers.control), ['insert', 'up-to-date'], 'live: the insert, then up-to-date')
ok(Number(r.headers.get('electric-cursor')) > 1, 'live: electric-cursor, above the one sent', r.headers.get('electric-cursor'))
ok(!r.headers.has('electric-schema'), 'live: no schema header')
const offset2 = r.headers.get('electric-offset')

// ---- bad input --------------------------------------------------------------------------
r = await shape('table=notes&offset=-1', null)
is(r.status, 401, 'no token: 401')
ok(/Bearer/.test(r.headers.get('www-authenticate') || ''), 'no token: www-authenticate')
r = await shape('table=notes&offset=-1', 'not.a.token')
is(r.status, 401, 'a malformed token: 401')
r = await shape('table=notes&offset=-1', tokenA.slice(0, -3) + 'AAA')
is(r.status, 401, 'a bad signature: 401')

for (const [q, want, c, what] of [
  ['table=notes', 400, 'BAD_OFFSET', 'no offset'],
  ['table=notes&offset=abc', 400, 'BAD_OFFSET', 'offset=abc'],
  ['table=notes&offset=-2', 400, 'BAD_OFFSET', 'offset=-2'],
  ['table=notes&offset=1_', 400, 'BAD_OFFSET', 'offset=1_'],
  ['table=notes&offset=99999999999999999999999_1&handle=x', 400, 'BAD_OFFSET', 'an offset past 64 bits'],
  ['table=notes&offset=5_5', 400, 'BAD_OFFSET', 'an offset without a handle'],
  ['table=notes&offset=-1&live=true', 400, 'BAD_REQUEST', 'live without a handle'],
  ['offset=-1', 400, 'BAD_REQUEST', 'no table'],
  ['table=nope&offset=-1', 400, 'UNKNOWN_TABLE', 'an unknown table'],
  ['table=notes&table=items&offset=-1', 400, 'BAD_REQUEST', 'a repeated parameter'],
  ['table=notes&offset=-1&columns=id,nope', 400, 'UNKNOWN_COLUMN', 'an unknown column'],
  ['table=notes&offset=-1&columns=%22id', 400, 'BAD_REQUEST', 'an unterminated quoted column'],
  ['table=notes&offset=-1&where=id%20%3D', 400, 'BAD_WHERE', 'a where clause that does not parse'],
  ['table=notes&offset=-1&where=pg_sleep(10)%20is%20null', 400, 'BAD_WHERE', 'a where clause calling a function'],
  ['table=notes&offset=-1&where=ferry.claim(%27sub%27)%20%3D%20%27u1%27', 400, 'BAD_WHERE', 'ferry.claim() in a where clause'],
  ['table=notes&offset=-1&where=id%20%3D%20%241', 400, 'BAD_WHERE', '$1 without params[1]'],
  ['table=notes&offset=-1&params%5B0%5D=1', 400, 'BAD_REQUEST', 'params[0]'],
  ['table=notes&offset=-1&log=everything', 400, 'BAD_REQUEST', 'log=everything'],
  ['table=notes&offset=-1&subset__limit=10', 400, 'BAD_REQUEST', 'a subset snapshot (not supported)'],
  ['table=notes&offset=-1&params%5B99999999999%5D=1', 400, 'BAD_REQUEST', 'params[huge]'],
]) {
  r = await shape(q)
  ok(r.status === want && code(r) === c, `${what}: ${want} ${c}`, `${r.status} ${r.text}`)
  ok(r.json && typeof r.json.message === 'string' && r.json.message.length > 10, `${what}: a message says why`, r.text)
}

r = await shape('table=notes&offset=-1&handle=0000000000000000-1')
is(r.status, 409, 'an unknown handle: 409')
is(r.headers.get('electric-handle'), handle, '... with the current handle')
is(r.json, [{ headers: { control: 'must-refetch' } }], '... and a must-refetch body')
r = await shape(`table=notes&offset=5_5&handle=${handle}`)
is(r.status, 409, 'an offset not in the log: 409')
r = await shape(`table=notes&offset=${offset2}&handle=${handle}`, tokenB)
is(r.status, 409, "another tenant's handle is never served: 409")
ok(r.headers.get('electric-handle') !== handle, '... with that tenant\'s own handle')

// A request head above libwebsockets' 4 KiB header space is refused: a 4xx, or the
// connection closed without an answer; never served, never a crash.
r = await shape(`table=notes&offset=-1&where=${'x'.repeat(20000)}`).catch((e) => ({ status: 'closed' }))
ok(r.status === 'closed' || (r.status >= 400 && r.status < 500), `a 20 kB query: refused (${r.status})`)
r = await get('/v1/mutations', tokenA)
is(r.status, 405, 'GET /v1/mutations: 405')
r = await get('/v1/shape?table=notes&offset=-1', tokenA, { method: 'POST', body: '[]' })
is(r.status, 405, 'POST /v1/shape: 405')
r = await get('/v1/shape', null, { method: 'OPTIONS', headers: { origin: 'http://example.com', 'access-control-request-method': 'GET' } })
ok(r.status === 204 && /authorization/.test(r.headers.get('access-control-allow-headers')), 'CORS preflight: 204, authorization allowed')

// tokens signed by hand: expired, another algorithm, none
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
const sign = (header, claims, alg = 'sha256') => {
  const head = `${b64(header)}.${b64(claims)}`
  return `${head}.${createHmac(alg, process.env.FERRY_HTTP_SECRET).update(head).digest('base64url')}`
}
const now = Math.floor(Date.now() / 1000)
r = await shape('table=notes&offset=-1', sign({ alg: 'HS256', typ: 'JWT' }, { sub: 'u1', tenants: ['a'], exp: now - 10 }))
ok(r.status === 401 && code(r) === 'TOKEN_EXPIRED', 'an expired token: 401 TOKEN_EXPIRED', r.text)
r = await shape('table=notes&offset=-1', sign({ alg: 'HS512', typ: 'JWT' }, { sub: 'u1', tenants: ['a'], exp: now + 60 }, 'sha512'))
is(r.status, 401, 'a token signed HS512 with the same secret: 401')
r = await shape('table=notes&offset=-1', `${b64({ alg: 'none' })}.${b64({ sub: 'u1', tenants: ['a'], exp: now + 60 })}.`)
is(r.status, 401, 'alg none: 401')
r = await shape('table=notes&offset=-1', sign({ alg: 'HS256', typ: 'JWT' }, { sub: 'u1', tenants: ['a'], exp: now + 60 }))
is(r.status, 200, 'a hand-signed valid token: 200')

// read rules apply over HTTP as on the WebSocket
r = await shape('table=owned&offset=-1')
is(r.json && r.json.filter((m) => m.value).map((m) => m.value.body), ['mine'], "a read rule: u1 sees its own row of its tenant only")
r = await shape('table=owned&offset=-1', process.env.TOKEN_AB)
is(r.json && r.json.filter((m) => m.value).map((m) => m.value.body), ['not mine'], '... and u3 its own')

// the pull rate limit (shared with WebSocket subscriptions): 10/s, burst 100
{
  const tok = sign({ alg: 'HS256', typ: 'JWT' }, { sub: 'greedy', tenants: ['a'], exp: now + 600 })
  const statuses = []
  for (let i = 0; i < 130; i++) statuses.push((await shape(`table=notes&offset=-1&cache-buster=${i}`, tok)).status)
  const limited = statuses.filter((x) => x === 429).length
  ok(statuses.slice(0, 100).every((x) => x === 200) && limited >= 20,
    `130 new reads at once by one user: the first 100 served, then 429 (${limited} refused)`)
  r = await shape('table=notes&offset=-1', tok)
  ok(r.status === 429 && Number(r.headers.get('retry-after')) >= 1, '... with retry-after', r.headers.get('retry-after'))
}

// raw bytes no client library would send
async function raw(bytes) {
  return new Promise((resolve) => {
    const s = net.connect(new URL(url).port, '127.0.0.1')
    let got = ''
    s.on('data', (d) => (got += d))
    s.on('error', () => resolve(got))
    s.on('close', () => resolve(got))
    s.setTimeout(3000, () => s.destroy())
    s.write(bytes)
    setTimeout(() => s.end(), 200)
  })
}
await raw('GET /v1/shape?table=%zz&offset=%%%&where=%00 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n\r\n')
await raw('GET /v1/shape?' + '&'.repeat(5000) + ' HTTP/1.1\r\nHost: x\r\n\r\n')
await raw(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3, 0x0d, 0x0a, 0x0d, 0x0a]))
await raw(`POST /v1/mutations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenA}\r\nContent-Length: 100\r\n\r\n[{"id":`)
const chunked = await raw(`POST /v1/mutations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenA}\r\n` +
  'Transfer-Encoding: chunked\r\n\r\n4\r\n[{}]\r\n0\r\n\r\n')
ok(chunked.startsWith('HTTP/1.1 411'), 'a chunked mutations body: 411, send a Content-Length', chunked.slice(0, 40))
ok(await alive(), 'ferryd is alive after malformed requests')

// ---- mutations ----------------------------------------------------------------------------
const post = (body, token = tokenA, headers = {}) =>
  get('/v1/mutations', token, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })
const ins = (id, ws, body, mid = randomUUID()) => ({
  id: mid, table: 'public.notes', op: 'insert', key: { id }, changes: { ws: { new: ws }, body: { new: body } },
})

r = await post('[]', null)
is(r.status, 401, 'mutations without a token: 401')
r = await post('[{"id": ')
ok(r.status === 400 && code(r) === 'BAD_JSON', 'bad JSON: 400 BAD_JSON', r.text)
r = await post('{"id": "x"}')
ok(r.status === 400 && code(r) === 'BAD_JSON', 'an object, not an array: 400', r.text)
r = await post('[]')
is(r.status, 400, 'an empty array: 400')
r = await post('[{"table": "notes"}]')
ok(r.status === 400 && /id/.test(r.json.message), 'a mutation without an id: 400 naming it', r.text)
r = await post('[' + JSON.stringify(ins(1, 'a', 'x'.repeat(1100000))) + ']')
is(r.status, 413, 'a body above 1 MiB: 413')

const m1 = ins(200, 'a', 'from http')
const m2 = { id: randomUUID(), table: 'public.notes', op: 'update', key: { id: 200 }, changes: { body: { old: 'from http', new: 'edited' } } }
r = await post(JSON.stringify([m1, m2]))
is(r.status, 200, 'two mutations: 200')
is(r.json && r.json.map((x) => [x.id, x.status]), [[m1.id, 'applied'], [m2.id, 'applied']],
  'results in order, both applied (the update saw the insert)')
is(sql('SELECT body FROM notes WHERE id = 200').trim(), 'edited', 'the row is in Postgres')
r = await post(JSON.stringify([m1]))
is(r.json && r.json[0].status, 'duplicate', 'the same id again: duplicate, not applied twice')
r = await post(JSON.stringify([ins(201, 'b', 'other tenant')]))
is(r.json && r.json[0].status, 'rejected', "a write to another tenant's row: rejected")
ok(r.json && r.json[0].error_code && r.json[0].error_message, '... with a code and message', r.text)
is(sql('SELECT count(*) FROM notes WHERE id = 201').trim(), '0', '... and not written')

// two requests of one client at once: applied in arrival order, the second after the first
const many = []
for (let i = 0; i < 60; i++) many.push(ins(300 + i, 'a', `bulk ${i}`))
const dep = { id: randomUUID(), table: 'public.notes', op: 'update', key: { id: 359 }, changes: { body: { old: 'bulk 59', new: 'after bulk' } } }
const hdrs = { 'ferry-client-id': 'ordered-client' }
const first = post(JSON.stringify(many), tokenA, hdrs)
await new Promise((res) => setTimeout(res, 5))
const second = post(JSON.stringify([dep]), tokenA, hdrs)
const [f1, f2] = await Promise.all([first, second])
ok(f1.json && f1.json.length === 60 && f1.json.every((x) => x.status === 'applied'), 'a client\'s first request: 60 applied')
is(f2.json && f2.json[0].status, 'applied', 'its second request, sent meanwhile, waited for the first: the update found the row',)
is(sql('SELECT body FROM notes WHERE id = 359').trim(), 'after bulk', '... and the row has the second request\'s value')

r = await shape(`table=notes&offset=${offset2}&handle=${handle}`)
ok(r.json && r.json.some((m) => m.value && m.value.id === '200' && m.value.body === 'edited'),
  'the mutation\'s row reaches the shape', r.text.slice(0, 300))

// ---- /v1/sync: exact deltas ---------------------------------------------------------------
const sync = (q, token = tokenA) => get(`/v1/sync?${q}`, token)
r = await sync('table=notes&limit=4')
is(r.status, 200, '/v1/sync initial load: 200')
ok(r.json && r.json.rows.length === 4 && r.json.has_more === true, 'a page of 4 rows, has_more', r.text.slice(0, 200))
ok(r.json && r.json.rows.every((x) => x.ws === 'a'), "only tenant a's rows")
is(r.headers.get('ferry-cursor'), r.json && r.json.cursor, 'the next cursor also in ferry-cursor')
let cursor = r.json.cursor
let all = r.json.rows
while (r.json && r.json.has_more) {
  r = await sync(`table=notes&limit=4&since=${encodeURIComponent(cursor)}`)
  all = all.concat(r.json.rows)
  cursor = r.json.cursor
}
is(new Set(all.map((x) => x.id)).size, 72, 'paging through gives every row of tenant a (10 + 62 written over HTTP)')
sql("UPDATE notes SET body = 'delta' WHERE id = 4")
sql("UPDATE notes SET body = 'not mine' WHERE id = 5")
r = await sync(`table=notes&since=${encodeURIComponent(cursor)}`)
is(r.json && r.json.rows.map((x) => [x.id, x.body]), [['4', 'delta']], 'the delta since the cursor: exactly the row changed, of this tenant')
sql('DELETE FROM notes WHERE id = 6')
r = await sync(`table=notes&since=${encodeURIComponent(r.json.cursor)}`)
ok(r.json && r.json.rows.length === 1 && r.json.rows[0].id === '6' && r.json.rows[0].ferry_deleted_at !== null,
  'a delete is in the delta as a tombstone', r.text.slice(0, 300))
const beforeTruncate = r.json.cursor
for (const [q, c, what] of [
  ['table=notes&since=garbage', 'BAD_CURSOR', 'a malformed cursor'],
  ['table=notes&limit=0', 'BAD_REQUEST', 'limit=0'],
  ['table=notes&limit=abc', 'BAD_REQUEST', 'limit=abc'],
  ['table=nope', 'UNKNOWN_TABLE', 'an unknown table'],
  ['since=1', 'BAD_REQUEST', 'no table'],
]) {
  r = await sync(q)
  ok(r.status === 400 && code(r) === c, `/v1/sync ${what}: 400 ${c}`, `${r.status} ${r.text}`)
}
r = await sync('table=notes', null)
is(r.status, 401, '/v1/sync without a token: 401')
sql('TRUNCATE notes')
r = await sync(`table=notes&since=${encodeURIComponent(beforeTruncate)}`)
is(r.status, 409, '/v1/sync with a cursor older than a TRUNCATE: 409')
ok(r.json && r.json.must_refetch === true, '... must_refetch in the body')

// the push rate limit (shared with WebSocket pushes): 100/s, burst 1000
{
  const tok = sign({ alg: 'HS256', typ: 'JWT' }, { sub: 'pusher', tenants: ['a'], exp: now + 600 })
  const batch = (from) => JSON.stringify(Array.from({ length: 1000 }, (_, i) => ins(from + i, 'a', `push ${from + i}`)))
  const [p1, p2] = await Promise.all([
    post(batch(10000), tok, { 'ferry-client-id': 'pusher-1' }),
    post(batch(20000), tok, { 'ferry-client-id': 'pusher-2' }),
  ])
  const results = [...(p1.json || []), ...(p2.json || [])]
  const applied = results.filter((x) => x.status === 'applied').length
  const limited = results.filter((x) => x.status === 'retry' && x.error_code === 'rate_limited')
  ok(results.length === 2000 && applied >= 1000 && limited.length > 0,
    `2000 mutations at once by one user: ${applied} applied, ${limited.length} answered retry (rate_limited)`)
  ok(limited.every((x) => x.retry_after_ms > 0) && (p1.headers.has('retry-after') || p2.headers.has('retry-after')),
    '... with retry_after_ms and a retry-after header')
  is(sql("SELECT count(*) FROM notes WHERE body LIKE 'push %'").trim(), String(applied), 'exactly the applied ones are written')
}

r = await quiet
const waited = Date.now() - quietStart
ok(r.status === 200 && waited > 19000 && waited < 23000, `a long-poll with nothing new is held about 20 s (${waited} ms)`)
is(r.json && r.json.map((m) => m.headers.control), ['up-to-date'], '... then answered with just up-to-date')
is(r.headers.get('electric-offset'), quiet0.headers.get('electric-offset'), '... at the same offset')

ok(await alive(), 'ferryd is alive at the end')
done()
