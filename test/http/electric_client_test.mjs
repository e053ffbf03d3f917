// test/http/electric_client_test.mjs -- the official @electric-sql/client (pinned in
// package.json) reads shapes from a real ferryd: initial rows, typed values, live
// inserts, updates and deletes, a long-poll answered within a second of the commit,
// tenants kept apart, must-refetch after a TRUNCATE.
import { ok, is, done, bail, url, tokenA, tokenB, sql, until, sleep } from './lib.mjs'

let electric
try {
  electric = await import('@electric-sql/client')
} catch (e) {
  bail(`cannot load @electric-sql/client: ${e.message}`)
}
const { ShapeStream, Shape } = electric

function open(table, token, extra = {}) {
  const stream = new ShapeStream({
    url: `${url}/v1/shape`,
    params: { table, ...(extra.params || {}) },
    headers: { Authorization: `Bearer ${token}` },
    onError: (e) => {
      console.log(`# stream error: ${e.status ?? ''} ${e.message}`)
    },
  })
  return { stream, shape: new Shape(stream) }
}

const byId = (rows) => [...rows].sort((a, b) => Number(a.id) - Number(b.id))

// ---- initial rows and typed values -----------------------------------------------------
const a = open('items', tokenA)
const rowsA = byId(await Promise.race([a.shape.rows, sleep(10000).then(() => null)]))
if (!ok(rowsA !== null, 'tenant a: the initial rows arrive')) done()
is(rowsA.map((r) => r.id), [1n, 2n], 'tenant a sees rows 1 and 2 (ids parsed as int8 BigInt)')
const r1 = rowsA[0]
is(r1.title, 'one', 'text value')
is(r1.done, false, 'bool false parsed')
is(rowsA[1].done, true, 'bool true parsed')
is(r1.meta, { x: 1, y: [true, null] }, 'jsonb parsed into an object')
is(r1.tags, ['a', 'b c'], 'text[] parsed into an array, quoted element included')
is(r1.due, '2024-05-01 10:00:00+00', 'timestamptz in Postgres text form')
is(r1.n, 9007199254740993n, 'int8 above 2^53 exact as BigInt')
is(rowsA[1].meta, null, 'NULL jsonb is null')
is(rowsA[1].tags, null, 'NULL array is null')
ok(a.stream.shapeHandle && a.stream.shapeHandle.length > 0, 'the stream has a shape handle', a.stream.shapeHandle)

// ---- a shape larger than one answer (1 MiB): several requests, then up-to-date ---------------
{
  const big = open('big', tokenA)
  const t0 = Date.now()
  const rows = await Promise.race([big.shape.rows, sleep(30000).then(() => null)])
  is(rows && rows.length, 20000, `a shape of 20,000 rows (about 4 MB of JSON) arrives whole (${Date.now() - t0} ms)`)
  ok(rows && new Set(rows.map((r) => r.id)).size === 20000, '... each row once')
  big.stream.unsubscribeAll()
}

// ---- other tenant --------------------------------------------------------------------------
const b = open('items', tokenB)
const rowsB = byId(await Promise.race([b.shape.rows, sleep(10000).then(() => null)]))
is(rowsB && rowsB.map((r) => r.id), [3n], 'tenant b sees only its row 3')
is(rowsB && rowsB[0].tags, [], 'empty array parsed')
ok(a.stream.shapeHandle !== b.stream.shapeHandle, 'the two tenants read different shapes')

// ---- live changes ---------------------------------------------------------------------------
let last = null
a.shape.subscribe(({ rows }) => {
  last = { rows: byId(rows), at: Date.now() }
})
const seen = async (pred, ms = 5000) => until(() => last !== null && pred(last.rows), ms)

await sleep(300) // the stream is parked in a long-poll now
sql("INSERT INTO items (id, ws, title, done) VALUES (10, 'a', 'ten', true)")
let committed = Date.now()
ok(await seen((rows) => rows.some((r) => r.id === 10n)), 'a live insert arrives')
ok(last.at - committed < 1000, `the long-poll was answered within a second of the commit (${last.at - committed} ms)`)

await sleep(300)
sql("UPDATE items SET title = 'ten!', tags = '{x}' WHERE id = 10")
committed = Date.now()
ok(await seen((rows) => rows.some((r) => r.id === 10n && r.title === 'ten!')), 'a live update arrives')
ok(last.at - committed < 1000, `answered within a second again (${last.at - committed} ms)`)
is(last.rows.find((r) => r.id === 10n).tags, ['x'], 'the updated array')

sql('DELETE FROM items WHERE id = 2')
ok(await seen((rows) => !rows.some((r) => r.id === 2n)), 'a live delete (tombstone) removes the row')

sql("INSERT INTO items (id, ws, title) VALUES (11, 'b', 'b only')")
sql("UPDATE items SET title = 'one again' WHERE id = 1")
ok(await seen((rows) => rows.some((r) => r.title === 'one again')), 'a later change arrives')
ok(!last.rows.some((r) => r.id === 11n), "tenant b's insert never reaches tenant a")
ok(await until(() => b.shape.currentRows.some((r) => r.id === 11n)), "tenant b's stream gets its insert")
ok(!b.shape.currentRows.some((r) => r.id === 10n || r.id === 1n), "tenant b never sees tenant a's rows")

// ---- a where clause with params, and columns --------------------------------------------
const w = open('items', tokenA, { params: { where: 'title = $1', params: ['ten!'], columns: ['id', 'title'] } })
const rowsW = await Promise.race([w.shape.rows, sleep(10000).then(() => null)])
is(rowsW, [{ id: 10n, title: 'ten!' }], 'where with params and a column list')
w.stream.unsubscribeAll()

// ---- server-sent events (liveSse), and resuming from an SSE offset -----------------------
{
  const sse = new ShapeStream({
    url: `${url}/v1/shape`,
    params: { table: 'items' },
    headers: { Authorization: `Bearer ${tokenA}` },
    liveSse: true,
  })
  const shapeS = new Shape(sse)
  const initial = await Promise.race([shapeS.rows, sleep(10000).then(() => null)])
  ok(initial && initial.some((r) => r.id === 10n), 'SSE: the initial rows')
  await sleep(300)
  sql("INSERT INTO items (id, ws, title) VALUES (30, 'a', 'over sse')")
  let t0 = Date.now()
  ok(await until(() => shapeS.currentRows.some((r) => r.id === 30n)), 'SSE: a live insert arrives')
  ok(Date.now() - t0 < 1000, `SSE: within a second of the commit (${Date.now() - t0} ms)`)
  sql("UPDATE items SET title = 'sse update' WHERE id = 30")
  ok(await until(() => shapeS.currentRows.some((r) => r.id === 30n && r.title === 'sse update')), 'SSE: a live update arrives')
  const handle = sse.shapeHandle
  const offset = sse.lastOffset
  ok(/^\d+_0$/.test(offset), `SSE: the client's offset comes from up-to-date (${offset})`)
  sse.unsubscribeAll()
  await sleep(200)
  sql("INSERT INTO items (id, ws, title) VALUES (31, 'a', 'while away')")
  const seenS = []
  let refetched = false
  const again = new ShapeStream({
    url: `${url}/v1/shape`,
    params: { table: 'items' },
    headers: { Authorization: `Bearer ${tokenA}` },
    handle,
    offset,
    liveSse: true,
  })
  again.subscribe((msgs) => {
    for (const m of msgs) {
      if (m.headers.control === 'must-refetch') refetched = true
      if (m.headers.operation) seenS.push(String(m.value.id))
    }
  })
  ok(await until(() => seenS.includes('31')), 'SSE: resuming from that offset gets the change made meanwhile')
  ok(!refetched, '... without a refetch')
  ok(!seenS.includes('30'), '... and without the changes it already had', seenS.join(','))
  again.unsubscribeAll()
}

// ---- log: 'changes_only': no initial rows, then the changes -------------------------------
{
  const co = new ShapeStream({
    url: `${url}/v1/shape`,
    params: { table: 'items' },
    headers: { Authorization: `Bearer ${tokenA}` },
    log: 'changes_only',
  })
  const shapeC = new Shape(co)
  const initial = await Promise.race([shapeC.rows, sleep(10000).then(() => null)])
  is(initial, [], "log: 'changes_only' starts with no rows")
  await sleep(300)
  sql("INSERT INTO items (id, ws, title) VALUES (40, 'a', 'change only')")
  ok(await until(() => shapeC.currentRows.some((r) => r.id === 40n)), '... then gets the changes')
  ok(shapeC.currentRows.length === 1, '... and only them', shapeC.currentRows.length)
  co.unsubscribeAll()
}

// ---- must-refetch after TRUNCATE -------------------------------------------------------
const controls = []
a.stream.subscribe((msgs) => {
  for (const m of msgs) if (m.headers && m.headers.control) controls.push(m.headers.control)
})
const oldHandle = a.stream.shapeHandle
await sleep(300)
sql('TRUNCATE items')
sql("INSERT INTO items (id, ws, title) VALUES (20, 'a', 'after truncate')")
ok(await until(() => controls.includes('must-refetch'), 10000), 'TRUNCATE: the client gets must-refetch')
ok(await seen((rows) => rows.length === 1 && rows[0].id === 20n, 10000),
  'after the refetch the shape holds only the row written after the TRUNCATE',
  JSON.stringify(last && last.rows.map((r) => String(r.id))))
ok(a.stream.shapeHandle !== oldHandle, 'the refetch uses a new shape handle')

a.stream.unsubscribeAll()
b.stream.unsubscribeAll()
done()
