#!/usr/bin/env node
// Compiles fixtures/contracts/**/*.sol with the pinned solcjs and writes one artifact per deployable
// contract to fixtures/artifacts/<Name>.json (ABI, creation and runtime bytecode, storage layout,
// compiler version and settings), plus fixtures/artifacts/build-info.json.
//
//   node tools/compile.mjs           write the artifacts
//   node tools/compile.mjs --check   recompile in memory; exit 1 naming every artifact that differs
import { readFileSync, writeFileSync, readdirSync, statSync, existsSync, mkdirSync } from 'node:fs'
import { join, relative, dirname, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const solc = require('solc')

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const srcDir = join(root, 'fixtures', 'contracts')
const outDir = join(root, 'fixtures', 'artifacts')
const check = process.argv.includes('--check')

export const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  viaIR: false,
  metadata: { bytecodeHash: 'none', appendCBOR: false },
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'storageLayout'] },
  },
}

function walk(dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.sol')) out.push(p)
  }
  return out
}

const files = walk(srcDir)
if (files.length === 0) {
  console.error(`no Solidity sources under ${relative(root, srcDir)}`)
  process.exit(1)
}
const sources = {}
for (const f of files) sources[relative(srcDir, f).split('\\').join('/')] = { content: readFileSync(f, 'utf8') }

const input = { language: 'Solidity', sources, settings: SETTINGS }
const output = JSON.parse(solc.compile(JSON.stringify(input)))
const errors = (output.errors || []).filter((e) => e.severity === 'error')
for (const e of output.errors || []) console.error(e.formattedMessage)
if (errors.length > 0) process.exit(1)

const version = solc.version()
const artifacts = {}
for (const [sourceName, contracts] of Object.entries(output.contracts || {})) {
  for (const [name, c] of Object.entries(contracts)) {
    const bytecode = c.evm.bytecode.object
    if (!bytecode) continue // interfaces and abstract contracts
    if (sourceName.includes('/lib/') || sourceName.startsWith('lib/')) continue // internal libraries
    if (artifacts[name]) {
      console.error(`duplicate contract name ${name} in ${sourceName}`)
      process.exit(1)
    }
    artifacts[name] = {
      contractName: name,
      sourceName,
      compiler: { name: 'solc', version },
      settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, viaIR: SETTINGS.viaIR, metadata: SETTINGS.metadata },
      abi: c.abi,
      bytecode: '0x' + bytecode,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      storageLayout: c.storageLayout,
    }
  }
}
const sourceHashes = {}
for (const [name, s] of Object.entries(sources)) sourceHashes[name] = createHash('sha256').update(s.content).digest('hex')
const buildInfo = {
  compiler: { name: 'solc', version, package: 'solc (npm, pinned in tools/package-lock.json)' },
  settings: SETTINGS,
  sources: sourceHashes,
  contracts: Object.keys(artifacts).sort(),
}

const rendered = {}
for (const [name, a] of Object.entries(artifacts)) rendered[`${name}.json`] = JSON.stringify(a, null, 2) + '\n'
rendered['build-info.json'] = JSON.stringify(buildInfo, null, 2) + '\n'

if (check) {
  const bad = []
  for (const [file, text] of Object.entries(rendered)) {
    const p = join(outDir, file)
    if (!existsSync(p)) bad.push(`${file}: missing`)
    else if (readFileSync(p, 'utf8') !== text) bad.push(`${file}: differs from a fresh compile`)
  }
  for (const file of existsSync(outDir) ? readdirSync(outDir) : []) {
    if (file.endsWith('.json') && !(file in rendered)) bad.push(`${file}: no longer produced by the sources`)
  }
  if (bad.length > 0) {
    console.error('artifacts are stale; run `node tools/compile.mjs`:\n  ' + bad.join('\n  '))
    process.exit(1)
  }
  console.log(`artifacts match a fresh compile (${Object.keys(artifacts).length} contracts, solc ${version})`)
} else {
  mkdirSync(outDir, { recursive: true })
  for (const [file, text] of Object.entries(rendered)) writeFileSync(join(outDir, file), text)
  console.log(`wrote ${Object.keys(artifacts).length} artifacts with solc ${version}`)
}
