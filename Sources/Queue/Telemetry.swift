@_exported import Telemetry
