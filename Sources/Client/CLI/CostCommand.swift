import ArgumentParser
import CommandOptions
import Foundation
import Queue

struct CostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cost",
        abstract: "Instance-hours per owner and instance type, from the database's rows.",
        discussion: """
            Each node counts from its cluster's ready time to its destruction
            (or now), the bootstrap node included. A warm-pool cluster's time
            before it was handed out is the pool's ("pool:NAME"), the rest its
            holder's. With --prices, hours become money.

            A price file has one INSTANCE_TYPE PRICE_PER_HOUR per line (# starts
            a comment), or is a JSON object {"m5.xlarge": 0.192, ...}. Types
            without a price are listed and their cost left out.

            Examples:
              client cost
              client cost --since 30d --prices prices.txt
              client cost --since 12h --json
            """
    )

    @Option(help: "How far back: 7d, 24h, 90m, 1d12h (default 7d).")
    var since: String = "7d"

    @Option(help: "A price table: INSTANCE_TYPE PRICE_PER_HOUR per line, or a JSON object.")
    var prices: String?

    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard let span = ClusterRequest.parseDuration(self.since), span >= .seconds(1), span <= .seconds(3650 * 86400)
        else {
            throw ValidationError("--since must be a span from 1s to 3650d, such as 7d, 24h or 90m; got \(self.since)")
        }
    }

    func run() async throws {
        let table: [String: Double]?
        do { table = try self.prices.map(Self.readPrices) } catch let error as QueueError { fail(error.message) }
        let span = ClusterRequest.parseDuration(self.since)!
        let lines = try await withStore(self.options) { api, _ in
            try await OperatorReports(client: api.client, logger: api.logger).cost(since: span)
        }
        let unpriced = Set(lines.map(\.instanceType).filter { table != nil && table?[$0] == nil }).sorted()
        func cost(_ line: OperatorReports.CostLine) -> Double? {
            table?[line.instanceType].map { $0 * line.instanceHours }
        }
        var owners: [String: (hours: Double, cost: Double)] = [:]
        for line in lines {
            owners[line.owner, default: (0, 0)].hours += line.instanceHours
            owners[line.owner, default: (0, 0)].cost += cost(line) ?? 0
        }
        if self.options.json {
            printJSON([
                "since_seconds": Double(span.components.seconds),
                "lines": lines.map { line -> [String: Any] in
                    var row: [String: Any] = [
                        "owner": line.owner, "instance_type": line.instanceType, "clusters": line.clusters,
                        "instances": line.nodes, "instance_hours": line.instanceHours,
                    ]
                    if let cost = cost(line) { row["cost"] = cost }
                    return row
                },
                "owners": owners.keys.sorted().map { owner -> [String: Any] in
                    var row: [String: Any] = ["owner": owner, "instance_hours": owners[owner]!.hours]
                    if table != nil { row["cost"] = owners[owner]!.cost }
                    return row
                },
                "unpriced_instance_types": unpriced,
            ])
            return
        }
        guard !lines.isEmpty else {
            print("No cluster was up in the last \(self.since).")
            return
        }
        let header =
            ["OWNER", "INSTANCE TYPE", "CLUSTERS", "INSTANCES", "INSTANCE-HOURS"] + (table == nil ? [] : ["COST"])
        var rows = lines.map { line in
            [
                line.owner, line.instanceType, "\(line.clusters)", "\(line.nodes)",
                String(format: "%.3f", line.instanceHours),
            ]
                + (table == nil ? [] : [cost(line).map { String(format: "%.2f", $0) } ?? "no price"])
        }
        for owner in owners.keys.sorted() where lines.filter({ $0.owner == owner }).count > 1 {
            rows.append(
                [owner, "(all)", "", "", String(format: "%.3f", owners[owner]!.hours)]
                    + (table == nil ? [] : [String(format: "%.2f", owners[owner]!.cost)]))
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            print(
                row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        if !unpriced.isEmpty { print("no price for: \(unpriced.joined(separator: ", "))") }
    }

    /// Reads a price table; a line it cannot read is an error that names the line.
    static func readPrices(_ path: String) throws -> [String: Double] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw QueueError(.invalidInput, "cannot read the price file \(path)")
        }
        let text = String(decoding: data, as: UTF8.self)
        if text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{") {
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw QueueError(
                    .invalidInput, "the price file \(path) is not a JSON object of instance type → price per hour")
            }
            var table: [String: Double] = [:]
            for (type, value) in object {
                guard let price = (value as? NSNumber)?.doubleValue, price >= 0, price.isFinite else {
                    throw QueueError(.invalidInput, "the price of \(type) in \(path) must be a number ≥ 0")
                }
                table[type] = price
            }
            return table
        }
        var table: [String: Double] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line =
                raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
            if fields.isEmpty { continue }
            guard fields.count == 2, let price = Double(fields[1]), price >= 0, price.isFinite else {
                throw QueueError(
                    .invalidInput,
                    "\(path) line \(number + 1): expected INSTANCE_TYPE PRICE_PER_HOUR, "
                        + "got \(line.trimmingCharacters(in: .whitespaces))")
            }
            table[String(fields[0])] = price
        }
        return table
    }
}
