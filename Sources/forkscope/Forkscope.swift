import ArgumentParser

// Every command here runs synchronously from main: commands that fork (or
// spawn processes that fork) must never have started Dispatch or Swift
// concurrency first (DESIGN.md, fork-safety rules).
@main
struct Forkscope: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forkscope",
        abstract: "A live view of what a trace exporter does around fork().",
        subcommands: [Demo.self, Dump.self, Sessions.self, Attach.self, Logs.self, Serve.self, Load.self, AgentCommand.self, Host.self, Bench.self, DemoHost.self, Export.self, Record.self, Replay.self, ScenarioCommand.self],
        defaultSubcommand: Demo.self
    )
}
