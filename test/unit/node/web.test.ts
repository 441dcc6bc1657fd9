import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findWebDir, WEB_CSP, WebPageMissingError, webHandlers } from '../../../src/node/web.js'
import { webRoutes } from '../../../src/node/web-routes.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-web-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('the web page handlers', () => {
  it("find the package's web/ folder from the source tree", () => {
    expect(findWebDir()).toMatch(/[\\/]web$/)
  })

  it('refuse to build over a folder without index.html (WEB_PAGE_MISSING), so the node does not start', async () => {
    await writeFile(join(dir, 'app.js'), '// no page')
    expect(() => webHandlers({ dir })).toThrow(WebPageMissingError)
    try {
      webHandlers({ dir })
    } catch (err) {
      expect((err as WebPageMissingError).code).toBe('WEB_PAGE_MISSING')
    }
    expect(() => findWebDir(join(dir, 'nowhere'))).toThrow(/web page/)
  })

  it('serve index.html at / and the folder’s other files by name, nothing else', async () => {
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title>')
    await writeFile(join(dir, 'notes.txt'), 'not a page file')
    await writeFile(join(dir, '.secret.js'), 'hidden')
    const handlers = webHandlers({ dir })
    // The handlers alone, on a bare fastify app (the node's server, with the whole table, is test/e2e/web.test.ts).
    const app = Fastify()
    app.get(webRoutes.webPage.url, (req, reply) => handlers.handlers.webPage(req as never, reply, ctx))
    app.get(webRoutes.webAsset.url, (req, reply) => handlers.handlers.webAsset(req as never, reply, ctx))
    app.setErrorHandler((err, _req, reply) => {
      void reply.code(404).send({ code: (err as { code?: string }).code })
    })
    const page = await app.inject({ url: '/' })
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['content-security-policy']).toBe(WEB_CSP)
    expect(page.body).toContain('<title>t</title>')
    const js = await app.inject({ url: '/web/app.js' })
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8')
    for (const name of ['notes.txt', '.secret.js', 'index.html', 'missing.css']) {
      const res = await app.inject({ url: `/web/${name}` })
      expect(res.statusCode, name).toBe(404)
      expect(res.json().code, name).toBe('ROUTE_NOT_FOUND')
    }
    await app.close()
  })
})

const ctx = { trackStream: () => () => {} }
