// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "flotilla",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "worker", targets: ["Worker"]),
        .executable(name: "client", targets: ["Client"]),
        .library(name: "Queue", targets: ["Queue"]),
        .library(name: "AWSProvisioner", targets: ["AWSProvisioner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    ],
    targets: [
        // Logging and metrics names every part shares (`cluster.id`, `aws.action`, …), the
        // JSON log format, and the metric names.
        // Time: the one withTimeout, Duration in seconds, and the retry backoff that jobs and
        // AWS calls share.
        .target(
            name: "Timing",
            path: "Sources/Queue/Timing",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Sources/Queue/Telemetry",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Queue",
            dependencies: [
                "Timing",
                "Telemetry",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/Queue/Queue",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AWSProvisioner",
            dependencies: [
                "Timing",
                "Telemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: swiftSettings
        ),
        // The fleet: job handlers, janitor passes and the settings that turn the environment
        // into cluster specs. Where Queue and AWSProvisioner meet; the executables stay thin.
        .target(
            name: "Fleet",
            dependencies: [
                "Timing",
                "Telemetry",
                "Queue",
                "AWSProvisioner",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Worker/Fleet",
            swiftSettings: swiftSettings
        ),
        // What operators read over HTTP: `/metrics` of `worker run` and `worker janitor`, and
        // the read-only page of `worker web`.
        .target(
            name: "Web",
            dependencies: [
                "Timing",
                "Queue",
                "Telemetry",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Worker/Web",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Worker",
            dependencies: [
                "Timing",
                "Telemetry",
                "Fleet",
                "Web",
                "Queue",
                "AWSProvisioner",
                "CommandOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Worker/CLI",
            swiftSettings: swiftSettings
        ),
        // The queue benchmark: its own executable, in no product, run by scripts/bench.
        .executableTarget(
            name: "QueueBench",
            dependencies: [
                "Timing",
                "CommandOptions",
                "Fleet",
                "Queue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Worker/Bench",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Client",
            dependencies: [
                "Timing",
                "Telemetry",
                "Queue",
                "CommandOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Client/CLI",
            swiftSettings: swiftSettings
        ),
        // What the executables' command lines share: the options that describe a cluster
        // (`client request|run`, `worker pool set`), the logging options, and `fail()`.
        .target(
            name: "CommandOptions",
            dependencies: [
                "Timing",
                "Telemetry",
                .product(name: "Logging", package: "swift-log"),
                "Queue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Client/CommandOptions",
            swiftSettings: swiftSettings
        ),
        // What every test target shares: waiting for a condition, and child processes run
        // without blocking the cooperative pool.
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "QueueTests",
            dependencies: [
                "Timing",
                "TestSupport", "Queue", .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AWSProvisionerTests",
            dependencies: [
                "Timing",
                "TestSupport",
                "AWSProvisioner",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FleetTests",
            dependencies: [
                "Timing",
                "TestSupport",
                "Fleet", "Queue", "AWSProvisioner",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "Timing",
                "TestSupport",
                "Queue", "AWSProvisioner",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WebTests",
            dependencies: ["Web"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TelemetryTests",
            dependencies: ["Telemetry", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TimingTests",
            dependencies: ["Timing"],
            swiftSettings: swiftSettings
        ),
    ]
)
