import { writeSync } from 'node:fs'
import type { Reporter, TestModule } from 'vitest/node'

/**
 * Prints one plain closing line at exit, `tests: N passed, N failed, N skipped`, after vitest's own summary, so CI
 * and people reading logs get the counts in a form any tool can read.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
      }
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) failed++
    }
    const line = `tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`
    // After vitest's own summary, as the run's last line.
    process.once('exit', () => writeSync(1, line))
  }
}
