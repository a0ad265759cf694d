// swift-tools-version:6.1
import PackageDescription

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "parley",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "parley", targets: ["parley"]),
        .library(name: "HiredisNIO", targets: ["HiredisNIO"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CSodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CCrack",
            providers: [.apt(["libcrack2-dev", "cracklib-runtime"])]
        ),
        // SMTP through libcurl (Debian's libcurl4-openssl-dev): one C function,
        // because curl_easy_setopt is variadic and Swift cannot call it.
        .target(
            name: "CCurlSMTP",
            linkerSettings: [.linkedLibrary("curl")]
        ),
        // A Redis client on SwiftNIO: hiredis encodes and parses, NIO does the I/O.
        // Knows nothing of chat.
        .target(
            name: "HiredisNIO",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        // The SQL migrations of sql/, embedded in the binary.
        .target(
            name: "ParleySchema",
            path: "sql",
            resources: [.embedInCode("001_init.sql"), .embedInCode("002_accounts.sql"), .embedInCode("003_send_batch.sql"), .embedInCode("004_message_edits.sql"), .embedInCode("005_reactions.sql"), .embedInCode("006_blocks.sql"), .embedInCode("007_mentions_search.sql"), .embedInCode("008_chat_settings.sql"), .embedInCode("009_push_subscriptions.sql"), .embedInCode("010_send_batch_generic_plans.sql")],
            swiftSettings: upcoming
        ),
        // The API reference of docs/ (openapi.yaml), embedded in the binary,
        // with its JSON form and the HTML page /docs serves.
        .target(
            name: "ParleyAPIReference",
            dependencies: [.product(name: "Yams", package: "Yams")],
            path: "docs",
            exclude: ["benchmark-notes.md", "deployment.md", "protocol-extensions.md", "web-client.png"],
            sources: ["APIReference.swift", "APIReferenceHTML.swift"],
            resources: [.embedInCode("openapi.yaml")],
            swiftSettings: upcoming
        ),
        // The web client of web/ (no build step), embedded in the binary.
        .target(
            name: "ParleyWebClient",
            path: "web",
            sources: ["WebClient.swift"],
            resources: [
                .embedInCode("index.html"), .embedInCode("style.css"), .embedInCode("app.js"),
                .embedInCode("api.js"), .embedInCode("live.js"), .embedInCode("push.js"), .embedInCode("sw.js"), .embedInCode("icon.svg"),
            ],
            swiftSettings: upcoming
        ),
        // Configuration, schema migrations, storage.
        .target(
            name: "ParleyCore",
            dependencies: [
                "HiredisNIO",
                "ParleySchema",
                "CSodium",
                "CCrack",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: upcoming
        ),
        // The chat domain: the chat service (every chat write), the
        // group-commit writer, and the events between processes (ChatEvent,
        // EventEnvelope, the publisher). Knows nothing of HTTP.
        .target(
            name: "ParleyChat",
            dependencies: [
                "ParleyCore",
                "HiredisNIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        // The mail worker (`parley mailer`).
        .target(
            name: "ParleyMailer",
            dependencies: [
                "ParleyCore",
                "ParleyChat",
                "HiredisNIO",
                "CCurlSMTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: upcoming
        ),
        // The HTTP/WebSocket gateway (`parley serve`).
        .target(
            name: "ParleyGateway",
            dependencies: [
                "ParleyCore",
                "ParleyChat",
                "ParleyAPIReference",
                "ParleyWebClient",
                "HiredisNIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        // `parley bench`: a load generator that talks to gateways as clients do.
        .target(
            name: "ParleyBench",
            dependencies: [
                "HiredisNIO",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "parley",
            dependencies: [
                "ParleyCore",
                "ParleyChat",
                "ParleyGateway",
                "ParleyMailer",
                "ParleyBench",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                "HiredisNIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        // Helpers for tests: the servers scripts/test started, private
        // redis-server processes for fault tests, child processes.
        .target(
            name: "ParleyTestSupport",
            dependencies: [
                "ParleyCore",
                "HiredisNIO",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("MemberImportVisibility")]
        ),
        .testTarget(
            name: "HiredisNIOTests",
            dependencies: [
                "HiredisNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "HiredisNIOIntegrationTests",
            dependencies: [
                "HiredisNIO",
                "ParleyTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ParleyCoreTests",
            dependencies: [
                "ParleyCore",
                "ParleySchema",
                "ParleyTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ParleyChatTests",
            dependencies: [
                "ParleyChat",
                "ParleyCore",
                "HiredisNIO",
                "ParleyTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ParleyGatewayTests",
            dependencies: [
                "ParleyGateway",
                "ParleyChat",
                "ParleyAPIReference",
                "ParleyWebClient",
                "ParleyCore",
                "HiredisNIO",
                "ParleyTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ParleyBenchTests",
            dependencies: ["ParleyBench"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ParleyMailerTests",
            dependencies: ["ParleyMailer", "ParleyChat", "ParleyCore", "HiredisNIO", "ParleyTestSupport", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: upcoming
        ),
        // Real `parley` processes against the real servers.
        .testTarget(
            name: "ParleyEndToEndTests",
            dependencies: [
                "ParleyTestSupport",
                "ParleyCore",
                "ParleySchema",
                "HiredisNIO",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
    ]
)
