"""bootkiln tasks. Each one is a line or two: the work lives in src/bootkiln/."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from bootkiln.commands import build as cli
from bootkiln.commands import dev as devtasks
from bootkiln.commands import installer, supply
from bootkiln.commands import publish as aws

PROFILE_HELP = {"profile": "profile name from profiles/ or a path to a .toml file (default: built-in)"}
JOBS_HELP = {"jobs": "how many independent stages may run at once (default: BOOTKILN_JOBS, or one per core; "
                     "1 = one after another)",
             "scheduler": "run the stages on the Dask cluster of this scheduler, e.g. tcp://HOST:8786 "
                          "(default: BOOTKILN_SCHEDULER or cluster.scheduler; needs cache.remote)"}


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(help=PROFILE_HELP)
def rootfs(c: Context, profile: str | None = None) -> None:
    """Build the profile's Debian root filesystem tarball (cached by content)."""
    _exit(cli.rootfs(profile))


@task(help={**PROFILE_HELP, "pytest_args": "extra arguments for pytest, e.g. '-k overlay'"})
def test_image(c: Context, profile: str | None = None, pytest_args: str = "") -> None:
    """Run testinfra checks against the profile's built root filesystem."""
    _exit(cli.test_image(profile, pytest_args.split()))


@task(help=PROFILE_HELP)
def builder(c: Context, profile: str | None = None) -> None:
    """Make (or find) the builder container image the stages run in."""
    _exit(cli.builder(profile))


@task(help=PROFILE_HELP)
def check_profile(c: Context, profile: str | None = None) -> None:
    """Validate a profile and print it with every default filled in; starts no container."""
    _exit(cli.check_profile(profile))


@task(help={"check": "only report whether the table is up to date (exit 2 if not)"})
def profile_keys(c: Context, check: bool = False) -> None:
    """Regenerate the key table in profiles/README.md from the profile model's field descriptions."""
    _exit(cli.profile_keys(check))


@task
def profiles(c: Context) -> None:
    """List the profiles in profiles/."""
    _exit(cli.list_profiles())


@task(help={"docker": "also remove bootkiln's containers and volumes from the Docker engine"})
def clean(c: Context, docker: bool = False) -> None:
    """Empty the stage cache (and with --docker, leftover containers and volumes)."""
    _exit(cli.clean(docker))


@task(help={"pytest_args": "extra arguments for pytest, e.g. '-k cache -x'"})
def test(c: Context, pytest_args: str = "") -> None:
    """Run ruff, mypy and pytest (unit, Docker, QEMU, AWS/moto; the slow tier if the time budget allows)."""
    _exit(devtasks.run_tests(pytest_args.split()))


@task(help={**PROFILE_HELP, **JOBS_HELP})
def build_iso(c: Context, profile: str | None = None, jobs: int = 0, scheduler: str | None = None) -> None:
    """Build the profile's ISO: hybrid BIOS/UEFI on amd64, UEFI-only on arm64 (busybox, kernel, initramfs)."""
    _exit(cli.build_iso(profile, jobs or None, scheduler))


@task(help={**PROFILE_HELP, "mode": "boot only these modes (repeatable): bios-cd, bios-usb, uefi-cd, uefi-usb "
            "(the ISO), disk-bios, disk-uefi (the disk image); under Secure Boot: uefi-cd-sb, uefi-usb-sb, "
            "disk-uefi-sb (Microsoft's keys), uefi-cd-ownkey, uefi-usb-ownkey, disk-uefi-ownkey (only the "
            "profile's own certificate)"},
      iterable=["mode"])
def boot_test(c: Context, profile: str | None = None, mode: list[str] | None = None) -> None:
    """Boot the profile's ISO (BIOS/UEFI, CD/USB) or disk image in QEMU and wait for the boot marker."""
    _exit(cli.boot_test(profile, mode or []))


@task(help={**PROFILE_HELP, **JOBS_HELP, "stage": "build only this stage (repeatable; default: every artifact)"},
      iterable=["stage"])
def build(c: Context, profile: str | None = None, stage: list[str] | None = None, jobs: int = 0,
          scheduler: str | None = None) -> None:
    """Build every artifact of the profile (rootfs, ISO, disk image), or the stages named with --stage."""
    _exit(cli.build(profile, stage or [], jobs or None, scheduler))


@task(help={**PROFILE_HELP, "keep": "keep both builds' folders here for inspection",
            "builder-arch": "make the second build's builder this architecture (amd64, arm64), run under "
                            "qemu-user, to prove the builder's architecture does not change the artifacts"})
def verify_reproducible(c: Context, profile: str | None = None, keep: str | None = None,
                        builder_arch: str | None = None) -> None:
    """Build twice from empty caches (other TZ, locale, umask, hostname, path[, builder]) and compare every artifact."""
    _exit(cli.verify_reproducible(profile, keep, builder_arch))


@task(help={"manifest": "a manifest.json written by an earlier build",
            "key": "public key the manifest's provenance must be signed with (default: BOOTKILN_SIGNING_KEY)"})
def rebuild(c: Context, manifest: str, key: str | None = None) -> None:
    """Rebuild from a manifest alone and report whether each artifact matches it."""
    _exit(cli.rebuild(manifest, key))


@task(help={**PROFILE_HELP, "dir": "folder of artifacts (default: out/<profile>/)",
            "key": "public key (PEM) the provenance must be signed with (default: the profile's signing key)"})
def verify_build(c: Context, profile: str | None = None, dir: str | None = None, key: str | None = None) -> None:
    """Check a build's folder against its provenance: the signature, every artifact's digest, the manifest."""
    _exit(supply.verify_build(profile, dir, key))


@task(help={"output": "folder for signing.key (0600) and signing.pub.pem", "algorithm": "ed25519 or ecdsa-p256"})
def signing_key(c: Context, output: str, algorithm: str = "ed25519") -> None:
    """Make a key pair for signing builds' provenance; never overwrites an existing key."""
    _exit(supply.signing_key(output, algorithm))


@task(help={"output": "folder for secureboot.key (0600) and secureboot.crt"})
def secureboot_key(c: Context, output: str) -> None:
    """Make a test key pair for Secure Boot with your own key (RSA 2048, self-signed); never overwrites."""
    _exit(supply.secureboot_key(output))


@task(help={**PROFILE_HELP, "image": "raw disk image (default: out/<profile>/disk.img)",
            "manifest": "build manifest whose seal tags the AMI (default: out/<profile>/manifest.json)"})
def publish_ami(c: Context, profile: str | None = None, image: str | None = None, manifest: str | None = None) -> None:
    """Upload the disk image as an EBS snapshot (EBS direct APIs) and register it as the next AMI version."""
    _exit(aws.publish_ami(profile, image, manifest))


@task(help={**PROFILE_HELP, "iso": "ISO to upload (default: out/<profile>/boot.iso)",
            "manifest": "build manifest (default: out/<profile>/manifest.json)"})
def upload_iso(c: Context, profile: str | None = None, iso: str | None = None, manifest: str | None = None) -> None:
    """Upload the profile's ISO and its manifest to S3 (multipart, a SHA-256 checksum per part)."""
    _exit(aws.upload_iso(profile, iso, manifest))


@task(help={**PROFILE_HELP, "hostname": "the host's FQDN (default: userdata.hostname)",
            "output": "file to write (default: out/<profile>/userdata/<hostname>.gz)"})
def userdata(c: Context, profile: str | None = None, hostname: str | None = None, output: str | None = None) -> None:
    """Write the installer's user-data for a host and print its size against EC2's 16 KB limit."""
    _exit(installer.userdata(profile, hostname, output))


@task(help={**PROFILE_HELP, "hostname": "the host's FQDN (default: userdata.hostname)",
            "ami": "AMI id (default: the newest version of the profile's AMI)",
            "userdata": "user-data file (default: made for the hostname)"})
def launch(c: Context, profile: str | None = None, hostname: str | None = None, ami: str | None = None,
           userdata: str | None = None) -> None:
    """Launch an instance of the profile's AMI with the host's user-data (IMDSv2 only); add its DNS record."""
    _exit(aws.launch(profile, hostname, ami, userdata))


@task(help={**PROFILE_HELP, "hostname": "the host's FQDN (default: userdata.hostname)"})
def teardown(c: Context, profile: str | None = None, hostname: str | None = None) -> None:
    """Delete the host's Route53 record and terminate its instance."""
    _exit(aws.teardown(profile, hostname))


@task(help=PROFILE_HELP)
def build_disk(c: Context, profile: str | None = None) -> None:
    """Build the profile's raw GPT disk image (BIOS and UEFI boot, ext4 root), without loop devices."""
    _exit(cli.build_disk(profile))


@task(help={**PROFILE_HELP, "source": "an existing root folder to copy instead of the built rootfs"})
def nfsroot(c: Context, profile: str | None = None, source: str | None = None) -> None:
    """Build a diskless client's root tree and the server's NFS export definitions."""
    _exit(cli.nfsroot(profile, source))


@task(help={"userdata": "the user-data file to serve (read again for every request)",
            "port": "port on 127.0.0.1 (default 8169; 0 picks a free one)",
            "tokens": "optional (EC2's default), required (IMDSv2 only) or v1-only (no token API)"})
def fake_imds(c: Context, userdata: str, port: int = 8169, tokens: str = "optional") -> None:
    """Serve a user-data file as EC2's metadata service (IMDSv2/v1) on loopback, for a QEMU guest at 169.254.169.254."""
    _exit(installer.fake_imds(userdata, port, tokens))


@task(help={"profile": "a profile to build (repeatable; default: the built-in one)",
            "target": "a stage to build for each profile (repeatable; default: iso)",
            "arch": "also build each profile for this Debian architecture (repeatable)",
            "workers": "start a Dask cluster of this many worker processes on this machine for the run "
                       "(with a dashboard)", **JOBS_HELP},
      iterable=["profile", "target", "arch"])
def build_matrix(c: Context, profile: list[str] | None = None, target: list[str] | None = None,
                 arch: list[str] | None = None, jobs: int = 0, scheduler: str | None = None, workers: int = 0) -> None:
    """Build several profiles (and architectures) at once; end with a table of artifacts, sha256s and timings."""
    _exit(cli.build_matrix(profile or [], target or [], arch or [], jobs or None, scheduler, workers))


@task(help={"scheduler": "the Dask scheduler to serve, e.g. tcp://HOST:8786 (default: BOOTKILN_SCHEDULER)",
            "threads": "stages this worker runs at once (default: 2)",
            "name": "the worker's name on the dashboard (default: Dask's)"})
def worker(c: Context, scheduler: str | None = None, threads: int = 2, name: str | None = None) -> None:
    """Run a Dask worker on this build host, advertising the architecture its Docker engine runs natively."""
    _exit(cli.worker(scheduler, threads, name))
