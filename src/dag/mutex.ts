/** A FIFO async mutex: `lock()` resolves with the release function once every earlier holder released. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve()

  lock(): Promise<() => void> {
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const prior = this.tail
    this.tail = prior.then(() => held)
    return prior.then(() => {
      let done = false
      return () => {
        if (done) return
        done = true
        release()
      }
    })
  }

  /** Run `fn` holding the lock. */
  async run<T>(fn: () => T | Promise<T>): Promise<T> {
    const release = await this.lock()
    try {
      return await fn()
    } finally {
      release()
    }
  }
}
