#!/bin/bash
# Re-capture the golden console logs in this directory from real Debian kernels under QEMU/TCG.
#
# Usage: tests/golden/console/capture.sh [NAME...]     (default: every capture listed at the end)
#
# Needs: qemu-system-x86_64, busybox-static (/bin/busybox), cpio, gcc-12, and the Debian packages
# linux-headers-6.1.0-56-amd64 and linux-headers-6.12.117+deb12-amd64 (to build the khcrash test
# module, a tiny stand-in for lkdtm, which the Debian kernels do not ship: CONFIG_LKDTM unset).
# $K must hold vmlinux-$KVER (the PVH-bootable ELF from the linux-image-$KVER-unsigned .deb).
# Scratch files go to $WORK; only the NAME.log files land in this directory.
# Afterwards regenerate/check the *.expected.json files (see README.md).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
K=${K:-/tmp/k}
WORK=${WORK:-/tmp/console-golden}
BUSYBOX=${BUSYBOX:-/bin/busybox}
K61=6.1.0-56-amd64
K612=6.12.117+deb12-amd64
mkdir -p "$WORK"

# --- the test module -------------------------------------------------------------------------
build_module() {  # KVER -> $WORK/mod/KVER/khcrash.ko
    local kver=$1 dir=$WORK/mod/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    echo 'obj-m := khcrash.o' >"$dir/Kbuild"
    cat >"$dir/khcrash.c" <<'MOD'
// SPDX-License-Identifier: GPL-2.0
/* khcrash: provoke one real kernel report at load time (a tiny stand-in for lkdtm). */
#include <linux/module.h>
#include <linux/delay.h>
#include <linux/preempt.h>
#include <linux/sched/clock.h>
#include <linux/string.h>

static char *what = "";
module_param(what, charp, 0444);
MODULE_PARM_DESC(what, "warning|oops|gpf|bug|atomic|spin|spinirq|hang");
static int seconds = 30;
module_param(seconds, int, 0444);
MODULE_PARM_DESC(seconds, "how long 'spin' spins (preemption off; 'spinirq': irqs off too) or "
		 "'hang' sleeps (state D)");

static int __init khcrash_init(void)
{
	u64 end = local_clock() + (u64)seconds * NSEC_PER_SEC;	/* jiffies may stop, see spinirq */

	pr_info("khcrash: provoking '%s'\n", what);
	if (!strcmp(what, "warning")) {
		WARN(1, "khcrash: deliberate warning\n");
	} else if (!strcmp(what, "oops")) {
		*(volatile int *)NULL = 1;
	} else if (!strcmp(what, "gpf")) {
		*(volatile int *)0xdead000000000100UL = 1;
	} else if (!strcmp(what, "bug")) {
		BUG();
	} else if (!strcmp(what, "atomic")) {
		preempt_disable();
		msleep(10);
		preempt_enable();
	} else if (!strcmp(what, "spin")) {
		preempt_disable();
		while (local_clock() < end)
			cpu_relax();
		preempt_enable();
	} else if (!strcmp(what, "spinirq")) {
		local_irq_disable();
		while (local_clock() < end)
			cpu_relax();
		local_irq_enable();
	} else if (!strcmp(what, "hang")) {
		msleep(seconds * 1000);	/* TASK_UNINTERRUPTIBLE, no wakeups: a hung task */
	}
	pr_info("khcrash: '%s' done\n", what);
	return 0;
}

static void __exit khcrash_exit(void)
{
}

module_init(khcrash_init);
module_exit(khcrash_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("provoke kernel reports for console-parser golden logs");
MOD
    make -s -C "/usr/src/linux-headers-$kver" M="$dir" modules
}

# --- the initramfs ---------------------------------------------------------------------------
# One initramfs per kernel; the scenario comes from the kernel command line: "khscenario=X" has no
# dot, so the kernel hands it to /init as an environment variable.
write_init() {
    cat >"$1" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t debugfs none /sys/kernel/debug 2>/dev/null
echo 1 > /proc/sys/kernel/sysrq
echo "KHARNESS:boot $(uname -r) scenario=$khscenario"
M=/lib/modules
case "$khscenario" in
clean)
    mkdir -p /sys/fs/cgroup
    if mount -t cgroup -o memory none /sys/fs/cgroup 2>/tmp/err; then
        echo "KHARNESS:cgroup v1 memory ok"; umount /sys/fs/cgroup
    else
        echo "KHARNESS:cgroup v1 memory fail $(sed 's/.*: //' /tmp/err)"
    fi
    echo "KHARNESS:hostkey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKCgOcK+5ppXq73Rrs+EbSUiYXsgsdYWukYToG9zSRg6"
    ;;
noise)
    # Userspace text without a newline, then a kernel message: they share one serial line.
    printf 'userspace-partial-line '; echo h > /proc/sysrq-trigger
    printf 'KHARNESS:glued'; echo 9 > /proc/sysrq-trigger
    printf 'noise before marker '; echo 'KHARNESS:mid payload after noise'
    # Userspace echoing kernel-looking text: not kernel reports.
    echo "BUG: userspace echo, not a kernel report"
    echo "WARNING: CPU: 0 PID: 1 at fake/file.c:1 fake_function+0x0/0x10"
    echo "Kernel panic - not syncing: userspace echo"
    echo "Out of memory: Killed process 1 (echo)"
    # Kernel backtraces that are not failures.
    echo l > /proc/sysrq-trigger
    echo w > /proc/sysrq-trigger
    sleep 1
    ;;
panic)
    echo c > /proc/sysrq-trigger
    ;;
initexit)
    echo "KHARNESS:exiting"
    exit 0
    ;;
warning|oops|gpf|bug|atomic)
    insmod $M/khcrash.ko what=$khscenario
    echo "KHARNESS:insmod rc=$?"
    ;;
softlockup)
    echo 3 > /proc/sys/kernel/watchdog_thresh     # soft lockup after 2*3 s
    insmod $M/khcrash.ko what=spin seconds=15
    echo "KHARNESS:insmod rc=$?"
    ;;
rcustall)
    # cmdline: rcu_cpu_stall_timeout=4, nosoftlockup.  A CPU spins with preemption off but its
    # tick still runs: it reports its own stall ("self-detected stall on CPU").
    insmod $M/khcrash.ko what=spin seconds=12
    echo "KHARNESS:insmod rc=$?"
    ;;
rcustall-irq)
    # Same, with interrupts off on CPU 1 too: no tick there, so CPU 0 (kept ticking by a busy
    # loop) reports it ("detected stalls on CPUs/tasks") and NMI-backtraces CPU 1.
    taskset 1 sh -c 'while :; do :; done' &
    taskset 2 insmod $M/khcrash.ko what=spinirq seconds=12
    echo "KHARNESS:insmod rc=$?"
    ;;
hungtask)
    echo 5 > /proc/sys/kernel/hung_task_timeout_secs
    insmod $M/khcrash.ko what=hang seconds=14
    echo "KHARNESS:insmod rc=$?"
    ;;
oom)
    mkdir -p /sys/fs/cgroup
    mount -t cgroup2 none /sys/fs/cgroup
    echo +memory > /sys/fs/cgroup/cgroup.subtree_control
    mkdir /sys/fs/cgroup/g
    echo 16M > /sys/fs/cgroup/g/memory.max
    sh -c 'echo $$ > /sys/fs/cgroup/g/cgroup.procs; exec tail /dev/zero'
    echo "KHARNESS:hog rc=$?"
    ;;
esac
echo "KHARNESS:ready"
poweroff -f
INIT
    chmod +x "$1"
}

build_initramfs() {  # KVER -> $WORK/initramfs-KVER.cpio
    local kver=$1 root=$WORK/root-$1
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,root,lib/modules}
    cp "$BUSYBOX" "$root/bin/busybox"
    write_init "$root/init"
    cp "$WORK/mod/$kver/khcrash.ko" "$root/lib/modules/"
    (cd "$root" && find . | cpio -o -H newc --quiet) >"$WORK/initramfs-$kver.cpio"
}

# Failure logs keep the firmware noise and the first lines of the boot up to "Kernel command
# line:", then skip the unchanging driver-init middle up to "Freeing unused kernel image".
trim_boot() {
    awk 'cut == 2 { print; next }
         cut == 0 { print; if (/Kernel command line:/) cut = 1; next }
         /Freeing unused kernel image/ { cut = 2; print }' "$1" >"$1.tmp"
    mv "$1.tmp" "$1"
}

capture() {  # NAME KVER SCENARIO SMP TRIM TIMEOUT EXTRA-CMDLINE
    local name=$1 kver=$2 scenario=$3 smp=$4 trim=$5 tmo=$6 extra=$7 out=$HERE/$1.log
    echo "capturing $name ($kver, $scenario)" >&2
    # QEMU's own stderr (e.g. "terminating on signal 15" after a timeout) is not console output.
    timeout "$tmo" qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp "$smp" -nographic -no-reboot \
        -kernel "$K/vmlinux-$kver" -initrd "$WORK/initramfs-$kver.cpio" \
        -append "console=ttyS0 panic=-1 khscenario=$scenario $extra" \
        >"$out" 2>"$WORK/$name.stderr" </dev/null || true
    [ "$trim" = trim ] && trim_boot "$out"
    return 0
}

for kver in $K61 $K612; do build_module "$kver"; build_initramfs "$kver"; done

ALL=(
    # name           kernel scenario smp  boot  timeout extra kernel cmdline
    "clean-6.1        $K61  clean      1 full  60"
    "clean-6.12       $K612 clean      1 full  60"
    "noise-6.12       $K612 noise      2 full  60"
    "quiet-clean-6.1  $K61  clean      1 full  60  loglevel=5"
    "quiet-clean-6.12 $K612 clean      1 full  60  loglevel=5"
    "quiet-warning-6.12 $K612 warning  1 full  60  loglevel=5"
    "quiet-oops-6.1   $K61  oops       1 full  60  loglevel=5"
    "quiet-oom-6.1    $K61  oom        1 full  60  loglevel=5"
    "panic-6.12       $K612 panic      1 trim  60"
    "panic-6.1        $K61  panic      1 trim  15  panic=0"
    "initexit-6.1     $K61  initexit   1 trim  60"
    "warning-6.1      $K61  warning    1 trim  60"
    "warning-6.12     $K612 warning    1 trim  60"
    "warnpanic-6.12   $K612 warning    1 trim  60  panic_on_warn=1"
    "oops-6.1         $K61  oops       1 trim  60"
    "oops-6.12        $K612 oops       1 trim  60"
    "oopspanic-6.1    $K61  oops       1 trim  60  oops=panic"
    "gpf-6.1          $K61  gpf        1 trim  60"
    "gpf-6.12         $K612 gpf        1 trim  60"
    "bug-6.1          $K61  bug        1 trim  60"
    "bug-6.12         $K612 bug        1 trim  60"
    "atomic-6.12      $K612 atomic     1 trim  60"
    "softlockup-6.12  $K612 softlockup 1 trim  60"
    "rcustall-6.1     $K61  rcustall   2 trim  60  rcupdate.rcu_cpu_stall_timeout=4 nosoftlockup"
    "rcustall-irq-6.12 $K612 rcustall-irq 2 trim 60 rcupdate.rcu_cpu_stall_timeout=4 nosoftlockup"
    "hungtask-6.1     $K61  hungtask   1 trim  60"
    "hungtask-6.12    $K612 hungtask   1 trim  60"
    "oom-6.1          $K61  oom        1 trim  60"
    "oom-6.12         $K612 oom        1 trim  60"
)
for entry in "${ALL[@]}"; do
    read -r name kver scenario smp trim tmo extra <<<"$entry"
    if [ $# -eq 0 ] || [[ " $* " == *" $name "* ]]; then
        capture "$name" "$kver" "$scenario" "$smp" "$trim" "$tmo" "${extra:-}"
    fi
done
