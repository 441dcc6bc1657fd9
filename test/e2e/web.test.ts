/**
 * The node's web page (GET /) in headless Chromium (Debian's `chromium`, driven by playwright-core), against a
 * federation of three in-process nodes (the harness). It loads with no console errors, lists the peers, shows a
 * block written through the API (on this node, and on another node, arriving by gossip) without a reload, and a
 * transfer in the accounts. Every wait is on the page's DOM.
 *
 * `ICN_WEB_SCREENSHOT=docs/web-page.png` also saves a screenshot of the page at the end.
 */
import { existsSync } from 'node:fs'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, routes } from '../../src/api/index.js'
import { recordToJson, signRecord } from '../../src/economics/index.js'
import { type Harness, startHarness } from '../helpers/harness.js'

const CHROMIUM = process.env.ICN_CHROMIUM ?? '/usr/bin/chromium'
/** Longest a page may take to show what it is waited on for (real time: the browser runs on real time). */
const WAIT_MS = 10_000

let h: Harness
let browser: Browser

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)`)
  h = await startHarness({ nodes: 3 })
  await h.waitConnected()
  // --no-sandbox: CI runs as root, where Chromium's sandbox does not start.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await h?.close()
})

/** Open node i's page with console errors and page errors collected, and wait until it has read the API once. */
async function openPage(i: number): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const errors: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text())
  })
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('requestfailed', (r) => {
    // The event stream is cut when the page closes; any other failed request is an error.
    if (!r.url().endsWith('/v1/events')) errors.push(`request failed: ${r.url()}`)
  })
  const res = await page.goto(`${h.node(i).apiUrl}/`)
  expect(res?.status()).toBe(200)
  await page.locator('body[data-loaded="true"]').waitFor({ timeout: WAIT_MS })
  // Events are not replayed: anything a test writes must come after the stream is open.
  await page.locator('#live-badge[data-state="ok"]').waitFor({ timeout: WAIT_MS })
  return { page, errors }
}

describe('the web page', () => {
  it('loads with no console errors and shows identity, readiness and every peer', async () => {
    const { page, errors } = await openPage(0)
    try {
      expect(await page.title()).toBe('ICN node')
      await expect.poll(() => page.locator('#identity-list').textContent()).toContain(h.nodes[0]!.did)
      await page.locator('#ready-badge[data-state="ok"]').waitFor({ timeout: WAIT_MS })
      expect(
        await page.locator('#readiness-rows tr[data-component="store"]').getAttribute('data-ready'),
      ).toBe('true')
      for (const other of h.nodes.slice(1)) {
        const row = page.locator(`#peers-rows tr[data-peer="${other.peerId}"]`)
        await row.waitFor({ timeout: WAIT_MS })
        expect(await row.getAttribute('data-connected')).toBe('true')
        expect(await row.getAttribute('data-did')).toBe(other.did)
      }
      expect(await page.locator('#peers-rows tr').count()).toBe(2)
      expect(errors).toEqual([])
    } finally {
      await page.close()
    }
  })

  it('shows a block written through the API without a reload: local, and from another node by gossip', async () => {
    const { page, errors } = await openPage(0)
    try {
      // A reload would lose this.
      await page.evaluate(() => {
        ;(globalThis as unknown as { icnMarker: number }).icnMarker = 42
      })
      const shows = (cid: string) =>
        page.locator(`#events-list li[data-type="block"][data-cid="${cid}"]`).waitFor({ timeout: WAIT_MS })

      // When each event's line entered the page, by the page's own clock (Date.now: the same system clock as this
      // process's), recorded by a MutationObserver: a measurement, not a check.
      await page.evaluate(`(() => {
        const seen = (globalThis.icnSeen = {})
        new MutationObserver((records) => {
          const t = Date.now()
          for (const r of records)
            for (const n of r.addedNodes) {
              const cid = n.getAttribute && n.getAttribute('data-cid')
              if (cid && !(cid in seen)) seen[cid] = t
            }
        }).observe(document.getElementById('events-list'), { childList: true })
      })()`)
      const seenAt = async (cid: string): Promise<number> =>
        Number(await page.evaluate(`globalThis.icnSeen['${cid}']`))

      // Written on this node: the page hears of it over /v1/events.
      const localMs: number[] = []
      const localChain = page.locator(`#chains-rows tr[data-chain="${await chainOf(0)}"]`)
      for (let n = 0; n < 5; n++) {
        const t0 = Date.now()
        const b = await h.client(0).call(routes.putValue, { body: { value: { page: 'local', n } } })
        await shows(b.cid)
        localMs.push((await seenAt(b.cid)) - t0)
        await expect.poll(() => localChain.getAttribute('data-cid'), { timeout: WAIT_MS }).toBe(b.cid)
        expect(await localChain.getAttribute('data-seq')).toBe(String(b.seq))
      }

      // Written on node 3: it reaches node 1 by gossip (the harness's clock advances while it waits).
      const remoteMs: number[] = []
      const remoteChain = page.locator(`#chains-rows tr[data-chain="${await chainOf(2)}"]`)
      for (let n = 0; n < 5; n++) {
        const t0 = Date.now()
        const b = await h.client(2).call(routes.putValue, { body: { value: { page: 'remote', n } } })
        await Promise.all([h.waitForBlock(b.cid, { on: [0] }), shows(b.cid)])
        remoteMs.push((await seenAt(b.cid)) - t0)
        await expect.poll(() => remoteChain.getAttribute('data-cid'), { timeout: WAIT_MS }).toBe(b.cid)
      }
      log(`web page: POST /v1/dag/blocks on this node → the block on the page: ${spread(localMs)}`)
      log(
        `web page: POST /v1/dag/blocks on another node → the block on the page (by gossip): ${spread(remoteMs)}`,
      )

      expect(await page.evaluate(() => (globalThis as unknown as { icnMarker?: number }).icnMarker)).toBe(42)
      expect(errors).toEqual([])
    } finally {
      await page.close()
    }
  })

  it('shows a transfer in the accounts', async () => {
    const { page, errors } = await openPage(0)
    try {
      const member = h.nodes[0]!.signer
      const payee = h.nodes[2]!.did
      const anon = new ApiClient({ baseUrl: h.node(0).apiUrl })
      const before = await anon.call(routes.getAccount, { params: { did: payee }, query: {} })
      const row = page.locator(`#accounts-rows tr[data-account="${payee}"]`)
      await expect
        .poll(() => row.getAttribute('data-received'), { timeout: WAIT_MS })
        .toBe(String(before.received))

      const out = await anon.call(routes.postTransfer, {
        body: recordToJson(
          signRecord(member, {
            kind: 'transfer',
            federation: h.federation.id,
            member: member.did,
            to: payee,
            amount: 37,
            nonce: 'web-page-test-1',
            expires: h.clock.now() + 60_000,
          }),
        ) as never,
      })
      await page
        .locator(`#events-list li[data-type="ledger:transfer"][data-cid="${out.cid}"]`)
        .waitFor({ timeout: WAIT_MS })
      await expect
        .poll(() => row.getAttribute('data-received'), { timeout: WAIT_MS })
        .toBe(String(before.received + 37))
      const payer = page.locator(`#accounts-rows tr[data-account="${member.did}"]`)
      expect(await payer.count()).toBe(1)

      const shot = process.env.ICN_WEB_SCREENSHOT
      if (shot) {
        // A few more blocks, so the events and chains have something to show.
        let last = ''
        for (let i = 0; i < 3; i++) {
          last = (await h.client(i).call(routes.putValue, { body: { value: { screenshot: i } } })).cid
          await h.waitForBlock(last, { on: [0] })
        }
        await page.locator(`#events-list li[data-cid="${last}"]`).waitFor({ timeout: WAIT_MS })
        await page.screenshot({ path: shot, fullPage: true })
      }
      expect(errors).toEqual([])
    } finally {
      await page.close()
    }
  })

  it('serves its files with a content security policy, and 404 ROUTE_NOT_FOUND for any other name', async () => {
    const base = h.node(0).apiUrl
    const page = await fetch(`${base}/`)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    const app = await fetch(`${base}/web/app.js`)
    expect(app.status).toBe(200)
    expect(app.headers.get('content-type')).toMatch(/^text\/javascript/)
    const css = await fetch(`${base}/web/style.css`)
    expect(css.headers.get('content-type')).toMatch(/^text\/css/)
    for (const name of ['nope.js', 'index.html', '..%2Fpackage.json', '.hidden.js']) {
      const res = await fetch(`${base}/web/${name}`)
      expect(res.status, name).toBe(404)
      expect(((await res.json()) as { code: string }).code, name).toBe('ROUTE_NOT_FOUND')
    }
  })
})

/** The id of node i's own chain (where the API writes values). */
async function chainOf(i: number): Promise<string> {
  return (await h.client(i).call(routes.getNode)).chain
}

/** `median 12 ms (min 9, max 30, n=5)` */
function spread(samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b)
  return `median ${s[Math.floor(s.length / 2)]} ms (min ${s[0]}, max ${s[s.length - 1]}, n=${s.length})`
}

function log(line: string): void {
  process.stdout.write(`${line}\n`)
}
