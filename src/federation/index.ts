/**
 * Federation: the signed genesis block that founds a federation (its name, founding members and their home
 * nodes, the nodes allowed to join and the parameters), its checks, and the one-block CAR file it travels in. The federation id
 * is the genesis CID.
 */
export {
  GenesisExistsError,
  GenesisNotFoundError,
  InvalidGenesisError,
  InvalidParameterError,
} from './errors.js'
export {
  checkGenesisInput,
  createGenesis,
  FEDERATION_NAME,
  type Federation,
  federationSummary,
  GENESIS_CHAIN,
  GENESIS_TYPE,
  type GenesisBody,
  type GenesisInput,
  MAX_GENESIS_NODES,
  memberHome,
  parseGenesis,
  readGenesisFile,
  writeGenesisFile,
} from './genesis.js'
export {
  checkParameters,
  defaultParameters,
  describeParameters,
  type FederationParameters,
  FederationParametersSchema,
  type ParameterDescription,
  parseParameterAssignments,
} from './params.js'
