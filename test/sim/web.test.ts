/**
 * The web page of a real `bin/icn node start --dev` process (the bundled dist/, which must find the package's
 * web/ folder), in headless Chromium: a node without a federation shows its identity and readiness, says it has
 * no peers and no ledger, logs no console error, and shows a block written through its API without a reload.
 */
import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, routes } from '../../src/api/index.js'
import { killAll, removeTempDirs, startNode, tempDir } from '../helpers/process.js'

const CHROMIUM = process.env.ICN_CHROMIUM ?? '/usr/bin/chromium'
const WAIT_MS = 10_000

let browser: Browser

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)`)
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
})

afterAll(async () => {
  await browser?.close()
  await killAll()
  await removeTempDirs()
})

describe('the web page of an icn process', () => {
  it('works on a node without a federation, from dist/', async () => {
    const node = await startNode(['--dev'], { env: { TMPDIR: await tempDir() } })
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text())
    })
    page.on('pageerror', (e) => errors.push(String(e)))
    try {
      await page.goto(`${node.info.api}/`)
      await page.locator('body[data-loaded="true"]').waitFor({ timeout: WAIT_MS })
      await page.locator('#live-badge[data-state="ok"]').waitFor({ timeout: WAIT_MS })
      expect(await page.locator('#identity-list').textContent()).toContain(node.info.did)
      await page.locator('#ready-badge[data-state="ok"]').waitFor({ timeout: WAIT_MS })
      expect(await page.locator('#peers-empty').isVisible()).toBe(true)
      expect(await page.locator('#accounts-empty').isVisible()).toBe(true)

      const client = new ApiClient({ baseUrl: node.info.api, apiKey: node.info.apiKey })
      const b = await client.call(routes.putValue, { body: { value: { from: 'the sim test' } } })
      await page
        .locator(`#events-list li[data-type="block"][data-cid="${b.cid}"]`)
        .waitFor({ timeout: WAIT_MS })
      await expect
        .poll(() => page.locator('#identity-list').textContent(), { timeout: WAIT_MS })
        .toContain(`seq ${b.seq}`)
      expect(errors).toEqual([])
    } finally {
      await page.close()
      await node.stop()
    }
  })
})
