/**
 * The handlers of the web page's routes (`web-routes.ts`). The page is static files in the package's `web/`
 * folder (no build step): `index.html`, served at `/`, and the files it loads, served at `/web/<name>`. They are
 * read once, when the handlers are built, so a node whose package lacks them stops at start with a clear message
 * instead of serving a broken page; a request for any other name is 404 ROUTE_NOT_FOUND.
 *
 * The folder is found by walking up from this module's file to the first ancestor holding `web/index.html`: the
 * same package root whether this runs from `src/` (tests, tsx) or bundled in `dist/` (bin/icn).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type ModuleHandlers, RouteNotFoundError } from '../api/index.js'
import { IcnError } from '../identity/index.js'
import { webRoutes } from './web-routes.js'

/** The package has no `web/` folder with the page in it (a broken install): the node does not start. */
export class WebPageMissingError extends IcnError {
  override readonly name = 'WebPageMissingError'
  constructor(from: string) {
    super(
      'WEB_PAGE_MISSING',
      `the node's web page (web/index.html) was not found in any folder above ${from}; reinstall the package`,
    )
  }
}

/** Media types of the files the page may consist of; any other file in `web/` is not served. */
const MEDIA_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
}

/**
 * What the page may do: load its own files and talk to this node only (no inline script, no other origin), and
 * not be framed.
 */
export const WEB_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

interface WebFile {
  type: string
  body: Buffer
}

/** The folder holding the page: `dir` if given, else the first `web/` with an `index.html` above this file. */
export function findWebDir(dir?: string): string {
  if (dir) {
    if (!existsSync(join(dir, 'index.html'))) throw new WebPageMissingError(dir)
    return dir
  }
  const from = dirname(fileURLToPath(import.meta.url))
  for (let at = from, i = 0; i < 6; i++, at = dirname(at)) {
    const candidate = join(at, 'web')
    if (existsSync(join(candidate, 'index.html'))) return candidate
  }
  throw new WebPageMissingError(from)
}

/** Every servable file of the page's folder by name (its top level only). */
function loadWebFiles(dir: string): Map<string, WebFile> {
  const files = new Map<string, WebFile>()
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const type = MEDIA_TYPES[extname(entry.name)]
    if (!entry.isFile() || !type || entry.name.startsWith('.')) continue
    files.set(entry.name, { type, body: readFileSync(join(dir, entry.name)) })
  }
  return files
}

export interface WebComponents {
  /** The folder of the page's files; default the package's `web/` (see `findWebDir`). */
  dir?: string
}

/** The handlers of `webRoutes`. Throws WebPageMissingError when the page's files are not there. */
export function webHandlers(c: WebComponents = {}): ModuleHandlers<typeof webRoutes> {
  const files = loadWebFiles(findWebDir(c.dir))
  const page = files.get('index.html')!
  const headers = {
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': WEB_CSP,
  }
  return {
    module: 'web',
    routes: webRoutes,
    handlers: {
      webPage: async (_req, reply) => reply.headers(headers).type(page.type).send(page.body),
      webAsset: async (req, reply) => {
        const f = req.params.file === 'index.html' ? undefined : files.get(req.params.file)
        if (!f) throw new RouteNotFoundError('GET', `/web/${req.params.file}`)
        return reply.headers(headers).type(f.type).send(f.body)
      },
    },
  }
}
