/** The `icn` command: init, id, node and dag sub-commands; every command that talks to a node uses the typed API client. */
export { CliError, EXIT } from './common.js'
export { buildProgram, main } from './main.js'
