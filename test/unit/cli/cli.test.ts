/** The command tree itself: help text without repeated defaults, and the log levels a node accepts. */
import type { Command } from 'commander'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { buildProgram } from '../../../src/cli/main.js'
import { checkOptions, defaultOptions, LOG_LEVELS } from '../../../src/node/options.js'

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)])
}

describe('icn --help', () => {
  it('states each default once: never "(default 3) (default: 3)"', () => {
    const program = buildProgram()
    const seen: string[] = []
    for (const cmd of [program, ...allCommands(program)]) {
      const help = cmd.createHelp()
      for (const opt of cmd.options) {
        const text = help.optionDescription(opt)
        seen.push(text)
        expect(
          text.match(/\(default/g)?.length ?? 0,
          `${cmd.name()} ${opt.flags}: ${text}`,
        ).toBeLessThanOrEqual(1)
      }
    }
    expect(seen.length).toBeGreaterThan(50)
  })
})

describe('log levels', () => {
  it("are pino's levels and silent", () => {
    expect([...LOG_LEVELS].sort()).toEqual([...Object.keys(pino.levels.values), 'silent'].sort())
  })

  it('an unknown one is an INVALID_OPTION naming the allowed ones', () => {
    expect(() => checkOptions({ ...defaultOptions, logLevel: 'loud' })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION', message: expect.stringContaining('debug, trace') }),
    )
    for (const level of LOG_LEVELS)
      expect(() => checkOptions({ ...defaultOptions, logLevel: level })).not.toThrow()
  })
})
