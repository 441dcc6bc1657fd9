// Loaded before every test file: libp2p needs Promise.withResolvers, which Node 20 lacks.
import '../src/polyfill.js'
