/// The prerequisites step for images that are not pre-baked: what DC/OS's `check_all`
/// requires (Docker running on overlay storage, ipset, unzip, xz, curl, tar, group
/// `nogroup`, SELinux not enforcing) and a synchronised clock (chronyd with a time server),
/// detected first and installed only when missing, so a pre-baked image passes through in
/// well under a second. Idempotent: a retry after a crash
/// runs it again safely. CentOS/RHEL/Rocky family (yum or dnf, rpm).
///
/// Docker is found by its daemon's unit, whichever package brought it (docker-ce, the
/// distribution's docker, a pre-baked build); a node without one gets `docker-ce` at the pinned
/// version, with its client at the same version (yum would otherwise pull the newest client).
///
/// It runs as root with its standard input closed (`sudo env PATH="$PATH" bash FILE
/// </dev/null`); every change it makes is printed, so the per-node log says what a node
/// lacked.
enum NodePreparation {
    static func script(dockerVersion: String, timeServer: String) -> String {
        "docker_version=\(shellQuote(dockerVersion))\ntime_server=\(shellQuote(timeServer))\n" + Self.body
    }

    private static let body = #"""
        set -o nounset -o pipefail
        say() { echo "flotilla-prereqs: $*"; }
        fail() { echo "flotilla-prereqs: $*" >&2; exit 1; }
        pm=yum
        command -v dnf >/dev/null 2>&1 && pm=dnf
        changed=0

        # Packages check_all looks for, and chrony (the clock, below). rpm decides, not PATH: a tool
        # may exist elsewhere. One query for all (each rpm call opens the package database): it
        # prints the name of each installed one on a line of its own.
        wanted=(curl tar xz unzip ipset chrony)
        installed=$'\n'$(rpm -q --queryformat '%{NAME}\n' "${wanted[@]}" 2>/dev/null)$'\n'
        missing=()
        for package in "${wanted[@]}"; do
          [[ $installed == *$'\n'"$package"$'\n'* ]] || missing+=("$package")
        done
        if [ ${#missing[@]} -gt 0 ]; then
          say "installing ${missing[*]}"
          "$pm" install -y "${missing[@]}" || fail "could not install ${missing[*]} with $pm"
          changed=1
        fi

        if ! getent group nogroup >/dev/null 2>&1; then
          say "adding group nogroup"
          groupadd nogroup || fail "could not add group nogroup"
          changed=1
        fi

        # SELinux: DC/OS needs it disabled or permissive (enforcing works only with the
        # targeted policy, and containers still break on it): make it permissive.
        if [ "$(getenforce 2>/dev/null || echo Disabled)" = Enforcing ]; then
          say "setting SELinux to permissive"
          setenforce 0 || fail "could not set SELinux to permissive"
          if [ -f /etc/selinux/config ]; then
            sed -i 's/^SELINUX=enforcing$/SELINUX=permissive/' /etc/selinux/config
          fi
          changed=1
        fi

        # Docker, on overlay storage. Its daemon's unit says whether a Docker is there.
        if ! systemctl cat docker.service >/dev/null 2>&1; then
          say "installing docker-ce $docker_version"
          modprobe overlay || fail "the overlay kernel module is not available"
          rpm -q yum-utils >/dev/null 2>&1 || "$pm" install -y yum-utils || fail "could not install yum-utils"
          yum-config-manager --add-repo https://download.docker.com/linux/centos/docker-ce.repo \
            || fail "could not add the Docker repository"
          case "$docker_version" in
            17.*|18.06.*) packages=("docker-ce-$docker_version") ;;  # no separate client before 18.09
            *) packages=("docker-ce-$docker_version" "docker-ce-cli-$docker_version" containerd.io) ;;
          esac
          "$pm" install -y "${packages[@]}" || fail "could not install docker-ce $docker_version"
          changed=1
        fi
        if ! systemctl is-active docker >/dev/null 2>&1; then
          say "starting docker"
          systemctl enable --now docker || fail "could not start docker"
          changed=1
        fi
        running=$(docker version --format '{{.Server.Version}}' 2>/dev/null) \
          || fail "docker is installed but its daemon does not answer"
        if [ "$changed" = 0 ] && [ "$running" != "$docker_version" ]; then
          echo "flotilla-prereqs: keeping the image's docker $running (a node without Docker gets $docker_version)"
        fi
        driver=$(docker info --format '{{.Driver}}' 2>/dev/null) || fail "docker is installed but does not answer"
        case "$driver" in
          overlay|overlay2) ;;
          *)
            say "switching docker from $driver to overlay2 storage"
            mkdir -p /etc/docker
            printf '{"storage-driver": "overlay2"}\n' > /etc/docker/daemon.json
            systemctl restart docker || fail "could not restart docker on overlay2"
            changed=1
            ;;
        esac

        # The clock: DC/OS will not start on a node whose clock is not synchronised. chronyd,
        # with the time server first (by default the Amazon Time Sync Service, which a VPC reaches
        # without internet access; the image's own servers stay as fallbacks).
        # (chrony itself came with the packages above.)
        pattern="^server ${time_server//./\\.} "
        if [ -z "$(sed -n "/$pattern/p" /etc/chrony.conf)" ]; then
          say "pointing chronyd at $time_server"
          sed -i "1i server $time_server prefer iburst minpoll 4 maxpoll 4" /etc/chrony.conf \
            || fail "could not add $time_server to /etc/chrony.conf"
          systemctl restart chronyd || fail "could not restart chronyd"
          changed=1
        fi
        if ! systemctl is-active chronyd >/dev/null 2>&1; then
          say "starting chronyd"
          systemctl enable --now chronyd || fail "could not start chronyd"
          changed=1
        fi

        if [ "$changed" = 0 ]; then say "nothing missing"; else say "done"; fi
        """#
}
