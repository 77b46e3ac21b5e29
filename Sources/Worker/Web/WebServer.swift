import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import Queue
import ServiceLifecycle
import Telemetry

/// `worker web`: a read-only page of the fleet. Server-rendered HTML (every value escaped),
/// refreshed in place when the database says something changed: LISTEN/NOTIFY → one
/// ``ChangeFeed`` → server-sent events → the page fetches its fragment again. Works without
/// JavaScript (reload to refresh) and fetches nothing from elsewhere: the page's script and
/// style are its own, and the Content-Security-Policy allows nothing else.
package enum WebServer {
    /// `refresh`: how often an open page reloads its fragment even without a notification
    /// (job starts and ends, events and sweeps send none), which also keeps the stream alive.
    package static func service(
        address: HTTPAddress, client: PostgresClient, feed: ChangeFeed,
        refresh: Duration = .seconds(5), logger: Logger
    ) -> some Service {
        let page = FleetPage(client: client, logger: logger)
        let router = Router()
        router.add(middleware: SecurityHeaders())
        router.get("/") { _, _ in
            Self.document(title: "Flotilla fleet", fragment: "/fragment", body: try await page.fleet())
        }
        router.get("fragment") { _, _ in Self.html(try await page.fleet()) }
        router.get("clusters/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let body = try await page.cluster(id) else { throw HTTPError(.notFound, message: "no cluster \(id)") }
            return Self.document(title: "Flotilla cluster \(id)", fragment: "/clusters/\(id)/fragment", body: body)
        }
        router.get("clusters/:id/fragment") { _, context in
            let id = try context.parameters.require("id")
            guard let body = try await page.cluster(id) else { throw HTTPError(.notFound, message: "no cluster \(id)") }
            return Self.html(body)
        }
        router.get("events") { _, _ -> Response in
            let changes = feed.subscribe()
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
                body: ResponseBody { writer in
                    try await writer.write(ByteBuffer(string: "retry: 2000\n: connected\n\n"))
                    // Changes as they are notified, and a periodic one for what sends no notification.
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        let (ticks, tick) = AsyncStream.makeStream(
                            of: String.self, bufferingPolicy: .bufferingNewest(4))
                        group.addTask {
                            while !Task.isCancelled {
                                try await Task.sleep(for: refresh)
                                tick.yield("event: change\ndata: periodic\n\n")
                            }
                        }
                        group.addTask {
                            for await change in changes {
                                let name = change.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == ":" }
                                tick.yield("event: change\ndata: \(name)\n\n")
                            }
                            tick.finish()
                        }
                        for await message in ticks {
                            try await writer.write(ByteBuffer(string: message))
                        }
                        group.cancelAll()
                    }
                    try await writer.finish(nil)
                })
        }
        router.get("static/app.js") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/javascript; charset=utf-8", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: StaticFiles.script)))
        }
        router.get("static/style.css") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: StaticFiles.style)))
        }
        router.get("healthz") { _, _ in "ok\n" }
        return MetricsServer.application(router, address: address, announce: "web", path: "/", logger: logger)
    }

    static func html(_ body: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func document(title: String, fragment: String, body: String) -> Response {
        var html = HTML()
        html.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
        html.text(title)
        html.raw("</title><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        html.raw("<link rel=\"stylesheet\" href=\"/static/style.css\">")
        html.raw("<script defer src=\"/static/app.js\"></script></head><body>")
        html.raw("<header><h1><a href=\"/\">Flotilla</a></h1>")
        html.raw("<span id=\"live\" class=\"live\">static: reload to refresh</span></header>")
        html.raw("<main data-fragment=\"\(HTML.escape(fragment))\">")
        html.raw(body)
        html.raw("</main></body></html>")
        return Self.html(html.output)
    }

    /// No framing, no sniffing, no referrer, and nothing loaded from anywhere but here.
    struct SecurityHeaders<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
            async throws -> Response
        {
            var response = try await next(request, context)
            response.headers[.contentSecurityPolicy] =
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
                + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            response.headers[.xContentTypeOptions] = "nosniff"
            response.headers[.referrerPolicy] = "no-referrer"
            return response
        }
    }
}

extension HTTPField.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
