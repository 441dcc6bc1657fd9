/** Readiness of one component the node depends on (store, network, ...). */
export interface ComponentStatus {
  ready: boolean
  detail?: string
}

export type HealthCheck = () => ComponentStatus | Promise<ComponentStatus>

export interface ReadinessReport {
  ready: boolean
  components: Record<string, ComponentStatus>
}

/** Components register a check; `/ready` asks them all. Checks must be cheap: they read cached state. */
export class Readiness {
  private readonly checks = new Map<string, HealthCheck>()

  register(name: string, check: HealthCheck): void {
    this.checks.set(name, check)
  }

  async report(): Promise<ReadinessReport> {
    const components: Record<string, ComponentStatus> = {}
    let ready = true
    for (const [name, check] of this.checks) {
      let status: ComponentStatus
      try {
        status = await check()
      } catch (err) {
        status = { ready: false, detail: err instanceof Error ? err.message : String(err) }
      }
      components[name] = status
      if (!status.ready) ready = false
    }
    if (this.checks.size === 0) ready = false
    return { ready, components }
  }
}
