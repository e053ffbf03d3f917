// test/http/lib.mjs -- TAP output and helpers shared by test/http's Node tests.
//
// Environment (set by test/http/run.sh): FERRYD_URL, TOKEN_A (tenant a), TOKEN_B
// (tenant b), TOKEN_AB (both), PG* for psql.
import { execFileSync } from 'node:child_process'

let n = 0
let failed = 0

export function ok(cond, name, diag) {
  n++
  if (!cond) failed++
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`)
  if (!cond && diag !== undefined) console.log(`# ${String(diag).split('\n').join('\n# ')}`)
  return cond
}

export function is(got, want, name) {
  const g = typeof got === 'string' ? got : JSON.stringify(got, (k, v) => (typeof v === 'bigint' ? `${v}n` : v))
  const w = typeof want === 'string' ? want : JSON.stringify(want, (k, v) => (typeof v === 'bigint' ? `${v}n` : v))
  return ok(g === w, name, `got:  ${g}\nwant: ${w}`)
}

export function done() {
  console.log(`1..${n}`)
  process.exit(failed > 0 ? 1 : 0)
}

export function bail(msg) {
  console.log(`Bail out! ${msg}`)
  process.exit(255)
}

export const url = process.env.FERRYD_URL
export const tokenA = process.env.TOKEN_A
export const tokenB = process.env.TOKEN_B

// Runs SQL through psql (autocommit); returns its output.
export function sql(text) {
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-c', text], { encoding: 'utf8' })
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Waits until pred() is true (polling every 10 ms); false after ms.
export async function until(pred, ms = 5000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await pred()) return true
    await sleep(10)
  }
  return false
}

export async function get(path, token, extra = {}) {
  const headers = { ...(extra.headers || {}) }
  if (token) headers.authorization = `Bearer ${token}`
  const res = await fetch(url + path, { ...extra, headers })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

// Whether ferryd still answers /healthz.
export async function alive() {
  try {
    const r = await fetch(url + '/healthz')
    return r.status === 200
  } catch {
    return false
  }
}
