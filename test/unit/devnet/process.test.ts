import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { nodeRunning, runsOn } from '../../../src/devnet/process.js'

describe('runsOn (is this pid the process started on the folder?)', () => {
  it('a command line names the folder as one of its arguments, or it is another process', () => {
    expect(runsOn('/usr/bin/prometheus\0--storage.tsdb.path\0/d/data\0', '', '/d/data', 1)).toBe(true)
    expect(runsOn('/usr/bin/prometheus\0--storage.tsdb.path\0/d/data2\0', '', '/d/data', 1)).toBe(false)
    expect(runsOn('/usr/bin/prometheus\0--path=/d/data\0', '', '/d/data', 1)).toBe(false)
  })

  it('an empty command line: a zombie is gone, a child in the middle of its exec is the one just spawned', () => {
    const self = 777
    expect(runsOn('', '4242 (prometheus) Z 777 4242 4242 0 -1', '/d/data', self)).toBe(false)
    expect(runsOn('', '4242 (prometheus) X 777 4242 4242 0 -1', '/d/data', self)).toBe(false)
    expect(runsOn('', '4242 (node) R 777 4242 4242 0 -1', '/d/data', self)).toBe(true)
    expect(runsOn('', '4242 (node) D 777 4242 4242 0 -1', '/d/data', self)).toBe(true)
    // Not a child of this process: a kernel thread (parent kthreadd, 2) that took a dead node's pid, or another's.
    expect(runsOn('', '4242 (kworker/0:1) I 2 0 0 0 -1', '/d/data', self)).toBe(false)
    expect(runsOn('', '4242 (node) R 1 4242 4242 0 -1', '/d/data', self)).toBe(false)
    // The name may hold spaces and parentheses: the state follows the last ')'.
    expect(runsOn('', '4242 (a) Z (b) S 777 4242', '/d/data', self)).toBe(true)
    expect(runsOn('', '4242 (a) R (b) Z 777 4242', '/d/data', self)).toBe(false)
    expect(runsOn('', '', '/d/data', self)).toBe(false)
  })
})

describe.runIf(process.platform === 'linux')('nodeRunning on Linux', () => {
  it('is true for a live process started on the folder, false for another folder and once it exited', async () => {
    const dir = `/tmp/icn-process-test-${process.pid}`
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', dir], { stdio: 'ignore' })
    await once(child, 'spawn')
    try {
      expect(nodeRunning(child.pid, dir)).toBe(true)
      expect(nodeRunning(child.pid, `${dir}-other`)).toBe(false)
    } finally {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
    expect(nodeRunning(child.pid, dir)).toBe(false)
    expect(nodeRunning(undefined, dir)).toBe(false)
  })
})
