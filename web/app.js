// The node's web page (served at GET /): reads this node's API and shows its identity, readiness, peers, chains,
// accounts and the events it streams. Plain ES module, no build step, no other origin: the page's CSP allows
// this node only. Every value from the API goes into the page as text (textContent), never as HTML.

/** How often the page re-reads the polled parts (identity, readiness, peers, chains, accounts). */
const POLL_MS = 3000
/** Events kept in the list. */
const MAX_EVENTS = 60
/** Event types of /v1/events (src/observability/events.ts). */
const EVENT_TYPES = [
  'block',
  'evidence',
  'peer:connected',
  'peer:disconnected',
  'ledger:transfer',
  'ledger:hold',
  'ledger:release',
  'ledger:settle',
]

const state = {
  /** GET /v1/node */
  node: null,
  /** GET /v1/federation (null without one) */
  federation: null,
  /** chain id → { chain, author, seq, cid, live } */
  chains: new Map(),
  /** peer id → blocks behind at the last anti-entropy round (icn_sync_lag_blocks) */
  lag: new Map(),
  peers: [],
  accounts: null,
  events: [],
}

// ---- helpers ----

const $ = (id) => document.getElementById(id)

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') e.className = v
    else if (k === 'text') e.textContent = v
    else e.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c)
  return e
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' })
  let body = null
  try {
    body = await res.json()
  } catch {
    // not JSON: body stays null
  }
  return { ok: res.ok, status: res.status, body }
}

/** `did:key:z6MkhaXg…Jx4y`: enough to tell DIDs apart at a glance; the full one is in the title. */
function shortId(id) {
  if (typeof id !== 'string') return ''
  const m = /^(did:key:)(.+)$/.exec(id)
  if (m) return `${m[1]}${m[2].slice(0, 8)}…${m[2].slice(-4)}`
  return id.length > 20 ? `${id.slice(0, 10)}…${id.slice(-6)}` : id
}

/** What the page calls a DID: this node, node N / member N of the genesis, or the treasury. */
function labelOf(did) {
  if (did === 'treasury') return 'treasury'
  if (state.node && did === state.node.did) return 'this node'
  const f = state.federation
  if (f) {
    const n = f.nodes.indexOf(did)
    if (n >= 0) return `node ${n + 1}`
    const m = f.members.indexOf(did)
    if (m >= 0) return `member ${m + 1}`
  }
  return ''
}

/** A DID as a label and its short form, with the full DID as the tooltip. */
function didCell(did) {
  const label = labelOf(did)
  return el(
    'span',
    { class: 'did', title: did },
    label ? el('strong', { text: label }) : null,
    label ? ' ' : null,
    el('code', { text: shortId(did) }),
  )
}

function cidCell(cid) {
  return el('code', { class: 'cid', title: cid, text: shortId(cid) })
}

function clock(ms) {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour12: false })
}

function duration(seconds) {
  const s = Math.floor(seconds)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`
const fmt = new Intl.NumberFormat()
const num = (n) => (typeof n === 'number' ? fmt.format(n) : '–')

function setBadge(id, stateName, text) {
  const b = $(id)
  b.dataset.state = stateName
  b.textContent = text
}

/** Replace a table body's rows, or show its "empty" note when there are none. */
function fillRows(bodyId, emptyId, rows) {
  const body = $(bodyId)
  body.replaceChildren(...rows)
  if (!emptyId) return
  $(emptyId).hidden = rows.length > 0
  body.closest('table').hidden = rows.length === 0
}

// ---- sections ----

function renderIdentity() {
  const n = state.node
  if (!n) return
  const f = state.federation
  $('node-label').textContent = labelOf(n.did) === 'this node' && f ? nodeName(n.did) : ''
  $('node-summary').textContent = [
    `icn ${n.version}`,
    `${n.store} store`,
    f ? `federation “${f.name}”` : 'no federation',
    `up ${duration(n.uptimeSeconds)}`,
  ].join(' · ')
  const rows = [
    ['DID', el('code', { class: 'wrap', text: n.did })],
    ['peer id', n.peerId ? el('code', { class: 'wrap', text: n.peerId }) : 'none (no federation)'],
    ['own chain', el('code', { class: 'wrap', text: n.chain })],
    ['head', n.head ? el('span', {}, `seq ${num(n.head.seq)} · `, cidCell(n.head.cid)) : 'no blocks yet'],
    [
      'federation',
      f
        ? el(
            'span',
            {},
            `${f.name} · ${plural(f.nodes.length, 'node')} · ${plural(f.members.length, 'member')} · `,
            cidCell(f.id),
          )
        : 'none',
    ],
    [
      'listening',
      n.listenAddrs.length
        ? el('code', { class: 'wrap', text: n.listenAddrs.join('\n') })
        : 'not on the network',
    ],
    ['started', new Date(n.startedAt).toLocaleString()],
  ]
  $('identity-list').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]))
}

/** `node 2` when the genesis lists this DID as its second node. */
function nodeName(did) {
  const i = state.federation ? state.federation.nodes.indexOf(did) : -1
  return i >= 0 ? `· node ${i + 1}` : ''
}

function renderReadiness(report) {
  const components = Object.entries(report.components ?? {})
  setBadge('ready-badge', report.ready ? 'ok' : 'bad', report.ready ? 'ready' : 'not ready')
  fillRows(
    'readiness-rows',
    null,
    components.map(([name, c]) =>
      el(
        'tr',
        { 'data-component': name, 'data-ready': String(c.ready) },
        el('td', { text: name }),
        el(
          'td',
          {},
          el('span', { class: `dot ${c.ready ? 'ok' : 'bad'}` }),
          c.ready ? ' ready' : ' not ready',
        ),
        el('td', { class: 'detail', text: c.detail ?? '' }),
      ),
    ),
  )
}

function renderPeers() {
  const peers = [...state.peers].sort((a, b) =>
    (labelOf(a.did) || a.did).localeCompare(labelOf(b.did) || b.did),
  )
  const up = peers.filter((p) => p.connected).length
  $('peers-count').textContent = peers.length ? `${up} of ${peers.length} connected` : ''
  fillRows(
    'peers-rows',
    'peers-empty',
    peers.map((p) => {
      const lag = state.lag.get(p.peerId)
      const stateText = p.connected
        ? 'connected'
        : p.refused
          ? 'refused'
          : p.dialFailures > 0
            ? `down (${p.dialFailures} failed dials)`
            : 'disconnected'
      return el(
        'tr',
        { 'data-peer': p.peerId, 'data-did': p.did, 'data-connected': String(p.connected) },
        el('td', {}, didCell(p.did)),
        el(
          'td',
          { title: p.lastDialError ?? '' },
          el('span', { class: `dot ${p.connected ? 'ok' : 'bad'}` }),
          ` ${stateText}`,
        ),
        el('td', { class: 'num', text: typeof p.rttMs === 'number' ? `${p.rttMs.toFixed(1)} ms` : '–' }),
        el('td', { class: `num ${lag > 0 ? 'warn' : ''}`, text: lag === undefined ? '–' : num(lag) }),
        el('td', { class: 'num', text: num(p.blocksReceived) }),
        el('td', { class: 'num', text: num(p.blocksSent) }),
        el('td', { class: `num ${p.score < 0 ? 'warn' : ''}`, text: p.score.toFixed(1) }),
        el('td', { text: p.lastSeen ? clock(Date.parse(p.lastSeen)) : '–' }),
      )
    }),
  )
}

function renderChains() {
  // A stable order (this node's chains first, then by node and chain name): rows do not move as blocks arrive.
  const order = (c) => `${c.author === state.node?.did ? 0 : 1}${labelOf(c.author) || '~'}${c.chain}`
  const chains = [...state.chains.values()].sort((a, b) => order(a).localeCompare(order(b)))
  $('chains-count').textContent = chains.length ? String(chains.length) : ''
  fillRows(
    'chains-rows',
    'chains-empty',
    chains.map((c) => {
      const slash = c.chain.lastIndexOf('/')
      const name = slash >= 0 ? c.chain.slice(slash + 1) : c.chain
      const fresh = c.live && Date.now() - c.live < 2000
      return el(
        'tr',
        { 'data-chain': c.chain, 'data-seq': String(c.seq), 'data-cid': c.cid, class: fresh ? 'fresh' : '' },
        el(
          'td',
          { title: c.chain },
          didCell(c.author),
          el('span', { class: 'chain-name', text: ` / ${name}` }),
        ),
        el('td', { class: 'num', text: num(c.seq) }),
        el('td', {}, cidCell(c.cid)),
        el('td', { class: 'muted', text: c.live ? clock(c.live) : '' }),
      )
    }),
  )
}

function renderAccounts() {
  const list = state.accounts
  $('accounts-count').textContent = list?.length ? String(list.length) : ''
  fillRows(
    'accounts-rows',
    'accounts-empty',
    (list ?? []).map((a) =>
      el(
        'tr',
        { 'data-account': a.did, 'data-balance': String(a.balance), 'data-received': String(a.received) },
        el('td', {}, a.did === 'treasury' ? el('strong', { text: 'treasury' }) : didCell(a.did)),
        el('td', { text: a.kind }),
        el('td', {}, didCell(a.home)),
        el('td', { class: 'num strong', text: num(a.balance) }),
        el('td', { class: 'num', text: num(a.mana) }),
        el('td', { class: 'num', text: num(a.held) }),
        el('td', { class: 'num', text: num(a.received) }),
        el('td', { class: 'num', text: num(a.sent) }),
      ),
    ),
  )
}

/** One line saying what an event was. */
function describe(type, e) {
  switch (type) {
    case 'block':
      return e.chain !== undefined
        ? [
            didCell(e.author ?? ''),
            ` / ${e.chain.slice(e.chain.lastIndexOf('/') + 1)} #${e.seq} `,
            cidCell(e.cid),
          ]
        : [`raw chunk `, cidCell(e.cid)]
    case 'evidence':
      return ['equivocation on ', el('code', { text: e.chain ?? '?' }), ` #${e.seq ?? '?'} `, cidCell(e.cid)]
    case 'peer:connected':
    case 'peer:disconnected':
      return [didCell(e.did)]
    default: {
      const parts = []
      if (e.from) parts.push(didCell(e.from))
      if (e.to) parts.push(' → ', didCell(e.to))
      if (typeof e.amount === 'number') parts.push(` ${num(e.amount)}`)
      if (e.hold) parts.push(' hold ', el('code', { text: shortId(e.hold) }))
      if (e.outcome && e.outcome !== 'applied')
        parts.push(el('span', { class: 'warn', text: ` refused: ${e.outcome}` }))
      return parts
    }
  }
}

/** A peer id as the page names it: the label of its node's DID when it is a known peer. */
function peerName(peerId) {
  const p = state.peers.find((x) => x.peerId === peerId)
  return (p && labelOf(p.did)) || shortId(peerId)
}

function addEvent(type, e) {
  const origin = e.origin
    ? el('span', {
        class: 'origin',
        text: e.peer ? `${e.origin} from ${peerName(e.peer)}` : e.origin,
      })
    : null
  const li = el(
    'li',
    { 'data-type': type, 'data-cid': e.cid, class: `ev ev-${type.replace(':', '-')}` },
    el('time', { text: clock(e.at) }),
    el('span', { class: 'type', text: type }),
    el('span', { class: 'what' }, ...describe(type, e)),
    origin,
  )
  const list = $('events-list')
  list.prepend(li)
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove()
  $('events-empty').hidden = true
}

// ---- data ----

async function refreshNode() {
  const [node, ready] = await Promise.all([getJson('/v1/node'), getJson('/ready')])
  if (node.ok) state.node = node.body
  if (state.node?.federation && !state.federation) {
    const f = await getJson('/v1/federation')
    if (f.ok) state.federation = f.body
  }
  renderIdentity()
  if (ready.body?.components) renderReadiness(ready.body)
  else setBadge('ready-badge', 'bad', `readiness: HTTP ${ready.status}`)
}

async function refreshPeers() {
  const [peers, metrics] = await Promise.all([
    getJson('/v1/peers'),
    fetch('/metrics', { cache: 'no-store' }).then((r) => (r.ok ? r.text() : '')),
  ])
  if (peers.ok) state.peers = peers.body.peers
  state.lag = new Map()
  for (const m of metrics.matchAll(/^icn_sync_lag_blocks\{[^}]*peer="([^"]+)"[^}]*\} (\S+)$/gm))
    state.lag.set(m[1], Number(m[2]))
  renderPeers()
}

async function refreshChains() {
  const r = await getJson('/v1/dag/chains')
  if (!r.ok) return
  for (const h of r.body.chains) {
    const known = state.chains.get(h.chain)
    if (!known || known.seq < h.seq) state.chains.set(h.chain, { ...h, live: known?.live })
  }
  renderChains()
}

async function refreshAccounts() {
  if (!state.node?.federation) {
    state.accounts = null
    renderAccounts()
    return
  }
  const r = await getJson('/v1/accounts')
  if (r.ok) state.accounts = r.body.accounts
  renderAccounts()
}

let accountsTimer
function accountsSoon() {
  clearTimeout(accountsTimer)
  accountsTimer = setTimeout(() => refreshAccounts().catch(report), 200)
}

let chainsFrame = 0
function chainsSoon() {
  if (chainsFrame) return
  chainsFrame = requestAnimationFrame(() => {
    chainsFrame = 0
    renderChains()
  })
}

function report(err) {
  setBadge('live-badge', 'bad', `node unreachable`)
  console.warn('icn page:', err)
}

function onEvent(type, e) {
  addEvent(type, e)
  if (type === 'block' && e.chain !== undefined) {
    const known = state.chains.get(e.chain)
    if (!known || known.seq <= e.seq)
      state.chains.set(e.chain, {
        chain: e.chain,
        author: e.author ?? '',
        seq: e.seq,
        cid: e.cid,
        live: Date.now(),
      })
    if (state.node && e.chain === state.node.chain && (state.node.head?.seq ?? -1) < e.seq) {
      state.node.head = { seq: e.seq, cid: e.cid }
      renderIdentity()
    }
    chainsSoon()
  } else if (type.startsWith('ledger:')) accountsSoon()
  else if (type.startsWith('peer:')) refreshPeers().catch(report)
}

function connectEvents() {
  const es = new EventSource('/v1/events')
  es.onopen = () => setBadge('live-badge', 'ok', 'live')
  es.onerror = () => setBadge('live-badge', 'bad', 'events: reconnecting')
  for (const type of EVENT_TYPES)
    es.addEventListener(type, (m) => {
      try {
        onEvent(type, JSON.parse(m.data))
      } catch (err) {
        console.warn('icn page: bad event', type, err)
      }
    })
}

async function poll() {
  try {
    await refreshNode()
    await Promise.all([refreshPeers(), refreshChains(), refreshAccounts()])
    document.body.dataset.loaded = 'true'
  } catch (err) {
    report(err)
  } finally {
    setTimeout(poll, POLL_MS)
  }
}

connectEvents()
poll()
