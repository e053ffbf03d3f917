// test/http/nginx_cache_test.mjs -- nginx with proxy_cache in front of ferryd: clients
// asking for the same shape cost ferryd one request; other tokens are never served from
// another's cache entry; live requests still work through the proxy.
import { ok, is, done, url, tokenA, tokenB, sql, get } from './lib.mjs'

const nginx = process.env.NGINX_URL
if (!nginx) {
  console.log('1..0 # SKIP nginx is not installed or did not start')
  process.exit(0)
}

async function ferrydRequests() {
  const m = await (await fetch(url + '/metrics')).text()
  return Number(/^ferry_http_requests_total (\d+)/m.exec(m)[1])
}
const via = async (q, token, extra = {}) => {
  const res = await fetch(`${nginx}/v1/shape?${q}`, { ...extra, headers: { authorization: `Bearer ${token}`, ...(extra.headers || {}) } })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

sql("INSERT INTO items (id, ws, title) VALUES (500, 'a', 'cached'), (501, 'b', 'other tenant') ON CONFLICT DO NOTHING")
const q = 'table=items&offset=-1&where=' + encodeURIComponent('id >= 500')

let before = await ferrydRequests()
const [c1, c2] = await Promise.all([via(q, tokenA), via(q, tokenA)])
let after = await ferrydRequests()
is([c1.status, c2.status], [200, 200], 'two clients at once through nginx: 200, 200')
is(c1.text, c2.text, 'the same body')
is(after - before, 1, 'one request reached ferryd for the two clients')

const c3 = await via(q, tokenA)
is(c3.headers.get('x-cache-status'), 'HIT', 'a third client: served from the cache')
is(await ferrydRequests(), after, '... without reaching ferryd')
ok(c3.headers.get('electric-handle') && c3.headers.get('electric-offset') && c3.headers.get('electric-schema'),
  'the electric headers come through the cache')

const b = await via(q, tokenB)
is(b.headers.get('x-cache-status'), 'MISS', "another tenant's token is not served from the cache")
const rows = JSON.parse(b.text).filter((m) => m.value)
is(rows.map((m) => m.value.id), ['501'], "... and gets its own rows only")

// a live request through the proxy
const handle = c1.headers.get('electric-handle')
const offset = c1.headers.get('electric-offset')
const live = via(`table=items&offset=${offset}&handle=${handle}&live=true&cursor=0&where=${encodeURIComponent('id >= 500')}`, tokenA)
await new Promise((r) => setTimeout(r, 300))
sql("INSERT INTO items (id, ws, title) VALUES (502, 'a', 'live via nginx')")
const l = await live
is(l.status, 200, 'a live request through nginx: 200')
ok(l.text.includes('live via nginx'), '... with the new row', l.text.slice(0, 200))
done()
