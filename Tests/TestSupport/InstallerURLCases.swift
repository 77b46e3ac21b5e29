/// Installer URLs the server (api_validate_request) and the provisioner (`ClusterSpec.validate`)
/// must judge alike: QueueTests runs them through the one, AWSProvisionerTests through the other.
public enum InstallerURLCases {
    public static let accepted = [
        "https://downloads.dcos.io/dcos/stable/2.2.0/dcos_generate_config.sh",
        "http://127.0.0.1:8080/dcos_generate_config.sh",
        "HTTPS://Bucket.s3.amazonaws.com/dcos_generate_config.sh?X-Amz-Expires=600&X-Amz-Signature=ab12",
        "http://[::1]:9000/installer.sh",
        "http://installer-host",
    ]
    public static let refused = [
        "ftp://example.com/dcos_generate_config.sh",
        "https://",
        "https://example.com/dcos generate config.sh",
        "https://user:password@example.com/dcos_generate_config.sh",
        "https://example.com:99999999/x",
        "https://example.com/\u{7}bell",
        "https://exämple.com/x",
        "file:///tmp/dcos_generate_config.sh",
        "https://example.com/" + String(repeating: "a", count: 2000),
    ]
}
