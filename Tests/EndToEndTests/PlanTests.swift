import AWSProvisioner
import Foundation
import TestSupport
import Testing

/// `worker plan`: what a request would create, from read-only calls (and DryRun ones),
/// against the emulator; and a worker that could not build anything refuses to start.
@Suite("worker plan and the refusals before spend", .timeLimit(.minutes(10)))
struct PlanTests {
    @Test("worker run raises its open-file limit to the hard one, and says so when the hard one is too low")
    func openFileLimit() async throws {
        func softLimit(_ pid: Int32) -> Int? {
            let limits = (try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)) ?? ""
            let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }
            return line?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.flatMap { Int($0) }
        }
        try await Fleet.with { fleet in
            // Every node of a step at once: a soft limit of 256 would run out; the hard one is taken.
            let roomy = try fleet.startInBackground(
                ["worker", "run", "--worker-id", "nofile-roomy", "--concurrency", "1"], openFiles: (256, 4096))
            let raised = try await eventually("the worker raised its soft limit") { softLimit(roomy.pid) == 4096 }
            #expect(raised, "\(softLimit(roomy.pid).map(String.init) ?? "no limits") open files")
            // 4 clusters of up to 100 nodes need more than a hard limit of 1,000: the worker says so.
            let tight = try fleet.startInBackground(
                ["worker", "run", "--worker-id", "nofile-tight", "--concurrency", "4"], openFiles: (256, 1000))
            let warned = try await eventually("the worker warned") {
                tight.stderrSoFar().contains("may open up to 1872 files (--concurrency 4")
            }
            #expect(warned && tight.stderrSoFar().contains("may open only 1000"), "\(tight.stderrSoFar())")
            #expect(softLimit(tight.pid) == 1000)
            for worker in [roomy, tight] {
                worker.send(SIGTERM)
                _ = await worker.finish(within: .seconds(30))
            }
        }
    }

    @Test(
        "worker plan prints image, subnet, zone, rules, launches, node scripts; --dry-run-aws asks AWS; creates nothing"
    )
    func plan() async throws {
        try await Fleet.with { fleet in
            let subnet = try #require(ProcessInfo.processInfo.environment["FLOTILLA_TEST_SUBNET_ID"])
            let ec2 = fleet.ec2()

            let plan = try await fleet.run(["worker", "plan", "--nodes", "3", "--dry-run-aws"])
            #expect(plan.status == 0, "\(plan.stderr)")
            let text = plan.output
            print(
                "worker plan --nodes 3 --dry-run-aws, without the node scripts:\n"
                    + text.split(separator: "\n").filter { !$0.hasPrefix("  #") }
                    .prefix(while: { !$0.hasPrefix("--- ") }).joined(separator: "\n"))
            for expected in [
                "subnet \(subnet) in us-west-2a", "root device /dev/sda1", "RunInstances (bootstrap):",
                "RunInstances (master):",
                "RunInstances (slave):", "RunInstances (slave_public):", "BlockDeviceMapping.1.DeviceName=/dev/sda1",
                "MetadataOptions.HttpTokens=optional",
                "HttpTokens optional (the image does not declare ImdsSupport v2.0",
                "tcp 22 from", "--- ip-detect ", "--- fault-domain-detect ",
                "every call would be allowed",
            ] {
                #expect(text.contains(expected), "'\(expected)' in:\n\(text)")
            }
            // ImportKeyPair, CreateSecurityGroup and one RunInstances per role (bootstrap, master, agent,
            // public agent).
            #expect(text.components(separatedBy: "would succeed (DryRunOperation)").count - 1 == 6, "\(text)")
            // Nothing of the planned cluster exists: no key pair, group or instance of its name or tag.
            let name = try #require(text.firstMatch(of: #/CreateSecurityGroup (flotilla-plan-[0-9a-f]+) in/#)?.1)
                .description
            let clusterID = String(name.dropFirst("flotilla-".count))
            #expect(try await ec2.describeKeyPairs(filters: [EC2Filter(name: "key-name", values: [name])]).isEmpty)
            #expect(
                try await ec2.describeSecurityGroups(filters: [EC2Filter(name: "group-name", values: [name])]).isEmpty)
            #expect(try await ec2.describeInstances(filters: [.tag("cluster", clusterID)]).isEmpty)

            // An image the region does not have: refused, nothing written.
            let unknown = try await fleet.run(
                ["worker", "plan", "--nodes", "1"], environment: ["FLOTILLA_AMI": "ami-0123456789abcdef0"])
            #expect(
                unknown.status == 64 && unknown.stderr.contains("ami-0123456789abcdef0 does not exist"),
                "\(unknown.stderr)"
            )

            // A pool pinned to a region nobody can build in is refused when it is set (the server
            // checks build_regions); once a worker of that region registers its image, it is not.
            let pinned = try await fleet.run([
                "worker", "pool", "set", "far", "--nodes", "1", "--region", "ap-northeast-3",
            ])
            #expect(
                pinned.status != 0 && pinned.stderr.contains("no image is known for region ap-northeast-3"),
                "\(pinned.stderr)")
            #expect(try await fleet.scalar("SELECT count(*)::int FROM pools", as: Int.self) == 0)
            let far = try fleet.startInBackground(
                ["worker", "run", "--kinds", "provision", "--worker-id", "far"],
                environment: ["AWS_REGION": "ap-northeast-3", "FLOTILLA_AMI": "ami-0123456789abcdef0"])
            let registered = try await eventually(
                "the ap-northeast-3 worker registers its image", timeout: .seconds(60)
            ) {
                try await fleet.scalar(
                    "SELECT count(*)::int FROM build_regions WHERE region = 'ap-northeast-3'", as: Int.self) == 1
            }
            far.send(SIGTERM)
            _ = await far.finish(within: .seconds(30))
            #expect(registered)
            let accepted = try await fleet.run([
                "worker", "pool", "set", "far", "--nodes", "1", "--region", "ap-northeast-3", "--min", "0", "--max",
                "0",
            ])
            #expect(accepted.status == 0, "\(accepted.stderr)")
            #expect(try await fleet.run(["worker", "pool", "delete", "far"]).status == 0)

            // A region with no known image and no FLOTILLA_AMI: worker run refuses to start.
            let starting = try fleet.startInBackground(
                ["worker", "run", "--kinds", "provision"],
                environment: ["AWS_REGION": "eu-west-3", "FLOTILLA_AMI": ""])
            let noImage = await starting.finish(within: .seconds(60))
            if noImage == nil { starting.send(SIGKILL) }
            #expect(
                noImage?.status == 1 && noImage?.stderr.contains("set FLOTILLA_AMI") == true,
                """
                worker run must refuse at once: \
                \(noImage.map { "\($0.status) \($0.stderr)" } ?? "still running after 60 s")
                """)
        }
    }
}
