// crid-nsexec runs one process inside a running container: its cgroups,
// namespaces, user, capabilities, rlimits, seccomp filter and AppArmor
// profile. crid uses it
// for exec and ExecSync instead of `runc exec`, which costs 60-70 ms here
// (two Go runtimes starting, the binary cloned into a memfd, state loaded)
// where joining a container takes about one.
//
// Why C: crid is a multi-threaded Go program, and setns(2) into a mount or
// user namespace is refused to a multi-threaded process. This program is
// single-threaded from its first instruction. It does no policy: crid
// derives every value from the container's OCI spec and checks that the
// target is the container's init before handing it over.
//
// Interface (all set up by crid, see internal/nsexec):
//   fd 0-2  the process's stdio
//   fd 3    the request: NUL-separated "key", "value" pairs up to EOF
//   fd 4    a pidfd of the container's init process
//   fd 5    status pipe (close-on-exec): "warning: " lines crid logs, then
//           an error line if anything fails before the process's execve;
//           closed without an error line on success
// Exit status: the process's exit code, 128+signal if it was killed, 255
// if the process could not be started (the reason is on fd 5).
// SIGTERM (or SIGINT, SIGHUP) kills the process, then the helper exits.
//
// Until its execve the process is not dumpable (set before anything is
// joined, as runc's nsexec does since CVE-2016-9962): between joining the
// container and execve it is root in the container's PID namespace, with
// the container's capabilities but not yet its seccomp filter, and a
// dumpable process there could be ptraced, or its /proc/PID/exe (this
// binary's memfd) opened, by the container's own root. execve makes the
// new image dumpable again once credentials and the filter are in place.
//
// Request keys (values are decimal unless noted):
//   ns FLAGS(hex)          CLONE_NEW* namespaces to join from the pidfd
//   cgroup DIR             host cgroup directory to join (repeatable)
//   oom N                  oom_score_adj
//   rlimit RES SOFT HARD   (repeatable)
//   uid N, gid N, groups "N N ...", umask N(octal)
//   cwd PATH
//   caps "BND EFF PRM INH AMB" (hex masks; without it every capability
//                          is dropped: crid always sends the ones it wants)
//   nnp 1                  no_new_privs
//   apparmor NAME          AppArmor profile the process execs into
//   seccomp-default "ACTION ERRNO"
//   seccomp-arch NAME      libseccomp arch name (repeatable)
//   seccomp-rule "ACTION ERRNO SYSCALL NCOND [IDX OP VALUE VALUE2]..."
//   seccomp-enosys 1       prepend runc's -ENOSYS stub to the filter: per
//                          arch, syscall numbers above the largest the
//                          profile names fail with ENOSYS, not the default
//   env K=V, arg S         (repeatable, in order)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ_FD 3
#define PIDFD 4
#define STATUS_FD 5
#define MAX_REQ (16 << 20)
#define MAX_ITEMS 4096

struct rlim {
	int res;
	rlim_t soft, hard;
};

struct req {
	unsigned long ns;
	char *cgroups[64];
	int ncgroups;
	char *oom;
	struct rlim rlimits[32];
	int nrlimits;
	uid_t uid;
	gid_t gid;
	gid_t groups[256];
	int ngroups;
	int has_umask;
	mode_t umask;
	char *cwd;
	uint64_t caps[5]; /* bounding, effective, permitted, inheritable, ambient; none unless sent */
	int nnp;
	char *apparmor;
	int procfd; /* the host's /proc, held for apparmor */
	char *sc_default;
	char *sc_arches[16];
	int nsc_arches;
	char **sc_rules;
	int nsc_rules;
	int sc_enosys;
	char warnings[2048]; /* see warn */
	char **env;
	int nenv;
	char **argv;
	int nargv;
};

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

// fail reports why the process could not be started on the status pipe
// and exits; crid turns the line into the exec's error.
static void fail(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(STATUS_FD, buf, n);
	(void)w;
	_exit(255);
}

static char *read_all(int fd, size_t *len)
{
	size_t cap = 64 << 10, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		fail("read request: out of memory");
	for (;;) {
		if (n == cap) {
			if (cap >= MAX_REQ)
				fail("read request: larger than %d bytes", MAX_REQ);
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				fail("read request: out of memory");
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("read request: %s", strerror(errno));
		if (r == 0)
			break;
		n += r;
	}
	*len = n;
	return buf;
}

static unsigned long long num(const char *key, const char *s, int base)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || end == s || *end)
		fail("request: bad %s value \"%s\"", key, s);
	return v;
}

static void parse(struct req *r, char *buf, size_t len)
{
	r->sc_rules = calloc(MAX_ITEMS, sizeof(char *));
	r->env = calloc(MAX_ITEMS + 1, sizeof(char *));
	r->argv = calloc(MAX_ITEMS + 1, sizeof(char *));
	if (!r->sc_rules || !r->env || !r->argv)
		fail("parse request: out of memory");
	if (len == 0 || buf[len - 1] != '\0')
		fail("request: not NUL-terminated");
	char *p = buf, *end = buf + len;
	while (p < end) {
		char *key = p;
		p += strlen(p) + 1;
		if (p >= end)
			fail("request: key %s has no value", key);
		char *val = p;
		p += strlen(p) + 1;
		if (!strcmp(key, "ns")) {
			r->ns = num(key, val, 16);
		} else if (!strcmp(key, "cgroup")) {
			if (r->ncgroups == 64)
				fail("request: too many cgroups");
			r->cgroups[r->ncgroups++] = val;
		} else if (!strcmp(key, "oom")) {
			r->oom = val;
		} else if (!strcmp(key, "rlimit")) {
			if (r->nrlimits == 32)
				fail("request: too many rlimits");
			struct rlim *l = &r->rlimits[r->nrlimits++];
			unsigned long long soft, hard;
			int res;
			if (sscanf(val, "%d %llu %llu", &res, &soft, &hard) != 3)
				fail("request: bad rlimit %s", val);
			l->res = res;
			l->soft = soft;
			l->hard = hard;
		} else if (!strcmp(key, "uid")) {
			r->uid = num(key, val, 10);
		} else if (!strcmp(key, "gid")) {
			r->gid = num(key, val, 10);
		} else if (!strcmp(key, "groups")) {
			char *save, *tok;
			for (tok = strtok_r(val, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
				if (r->ngroups == 256)
					fail("request: too many groups");
				r->groups[r->ngroups++] = num(key, tok, 10);
			}
		} else if (!strcmp(key, "umask")) {
			r->has_umask = 1;
			r->umask = num(key, val, 8);
		} else if (!strcmp(key, "cwd")) {
			r->cwd = val;
		} else if (!strcmp(key, "caps")) {
			unsigned long long c[5];
			if (sscanf(val, "%llx %llx %llx %llx %llx", &c[0], &c[1], &c[2], &c[3], &c[4]) != 5)
				fail("request: bad caps %s", val);
			for (int i = 0; i < 5; i++)
				r->caps[i] = c[i];
		} else if (!strcmp(key, "nnp")) {
			r->nnp = !strcmp(val, "1");
		} else if (!strcmp(key, "apparmor")) {
			if (!*val || strpbrk(val, " \t\n"))
				fail("request: bad apparmor profile \"%s\"", val);
			r->apparmor = val;
		} else if (!strcmp(key, "seccomp-default")) {
			r->sc_default = val;
		} else if (!strcmp(key, "seccomp-arch")) {
			if (r->nsc_arches == 16)
				fail("request: too many seccomp arches");
			r->sc_arches[r->nsc_arches++] = val;
		} else if (!strcmp(key, "seccomp-enosys")) {
			r->sc_enosys = !strcmp(val, "1");
		} else if (!strcmp(key, "seccomp-rule")) {
			if (r->nsc_rules == MAX_ITEMS)
				fail("request: too many seccomp rules");
			r->sc_rules[r->nsc_rules++] = val;
		} else if (!strcmp(key, "env")) {
			if (r->nenv == MAX_ITEMS)
				fail("request: too many env entries");
			r->env[r->nenv++] = val;
		} else if (!strcmp(key, "arg")) {
			if (r->nargv == MAX_ITEMS)
				fail("request: too many args");
			r->argv[r->nargv++] = val;
		} else {
			fail("request: unknown key %s", key);
		}
	}
	if (r->nargv == 0)
		fail("request: no args");
}

static void write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	size_t n = strlen(data);
	if (write(fd, data, n) != (ssize_t)n)
		fail("write %s: %s", path, strerror(errno));
	close(fd);
}

// action maps an OCI seccomp action name to libseccomp's.
static uint32_t action(const char *name, int errno_ret)
{
	if (!strcmp(name, "SCMP_ACT_ALLOW"))
		return SCMP_ACT_ALLOW;
	if (!strcmp(name, "SCMP_ACT_ERRNO"))
		return SCMP_ACT_ERRNO(errno_ret);
	if (!strcmp(name, "SCMP_ACT_KILL") || !strcmp(name, "SCMP_ACT_KILL_THREAD"))
		return SCMP_ACT_KILL_THREAD;
	if (!strcmp(name, "SCMP_ACT_KILL_PROCESS"))
		return SCMP_ACT_KILL_PROCESS;
	if (!strcmp(name, "SCMP_ACT_TRAP"))
		return SCMP_ACT_TRAP;
	if (!strcmp(name, "SCMP_ACT_TRACE"))
		return SCMP_ACT_TRACE(errno_ret);
	if (!strcmp(name, "SCMP_ACT_LOG"))
		return SCMP_ACT_LOG;
	fail("seccomp: unsupported action %s", name);
}

static enum scmp_compare compare_op(const char *name)
{
	static const struct {
		const char *name;
		enum scmp_compare op;
	} ops[] = {
		{"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT},
		{"SCMP_CMP_LE", SCMP_CMP_LE}, {"SCMP_CMP_EQ", SCMP_CMP_EQ},
		{"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
		{"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strcmp(ops[i].name, name))
			return ops[i].op;
	fail("seccomp: unsupported operator %s", name);
}

// warn queues a "warning: " line for crid's log in r->warnings, written
// on the status pipe before the fork; it is bounded so that it never fills
// the pipe, which crid reads only once the helper has exited.
static void warn(struct req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct req *r, const char *fmt, ...)
{
	size_t size = sizeof(r->warnings), used = strlen(r->warnings);
	if (used + 16 >= size)
		return;
	used += snprintf(r->warnings + used, size - used, "warning: ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->warnings + used, size - used - 1, fmt, ap);
	va_end(ap);
	strcat(r->warnings, "\n");
}

// rule_name returns the syscall name of a "seccomp-rule" value (its third
// field) without changing the value.
static int rule_name(const char *spec, char *name, size_t n)
{
	const char *p = spec;
	for (int field = 0; field < 2; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -1;
		p++;
	}
	size_t l = strcspn(p, " ");
	if (l == 0 || l >= n)
		return -1;
	memcpy(name, p, l);
	name[l] = '\0';
	return 0;
}

// add_rule adds one OCI syscall rule the way runc does: conditions on
// distinct arguments are ANDed in one rule; several conditions on the same
// argument become one rule each (ORed), which libseccomp cannot express in
// a single rule. A name this libseccomp does not know is left out, as
// runc leaves it out, and reported.
static void add_rule(scmp_filter_ctx ctx, uint32_t def, char *spec, char *unknown, size_t unknown_len)
{
	char *save;
	char *act = strtok_r(spec, " ", &save);
	char *err = strtok_r(NULL, " ", &save);
	char *name = strtok_r(NULL, " ", &save);
	char *ncond = strtok_r(NULL, " ", &save);
	if (!act || !err || !name || !ncond)
		fail("seccomp: bad rule");
	uint32_t a = action(act, (int)num("errno", err, 10));
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR) {
		size_t used = strlen(unknown);
		if (used + strlen(name) + 2 < unknown_len)
			snprintf(unknown + used, unknown_len - used, " %s", name);
		return;
	}
	if (a == def)
		return; // libseccomp refuses rules that repeat the default
	int n = (int)num("conditions", ncond, 10);
	if (n > 6)
		fail("seccomp: %s: too many conditions", name);
	struct scmp_arg_cmp conds[6];
	int seen[6] = {0}, repeated = 0;
	for (int i = 0; i < n; i++) {
		char *idx = strtok_r(NULL, " ", &save);
		char *op = strtok_r(NULL, " ", &save);
		char *v1 = strtok_r(NULL, " ", &save);
		char *v2 = strtok_r(NULL, " ", &save);
		if (!idx || !op || !v1 || !v2)
			fail("seccomp: %s: bad condition", name);
		unsigned arg = (unsigned)num("arg", idx, 10);
		if (arg > 5)
			fail("seccomp: %s: bad argument index %u", name, arg);
		if (seen[arg]++)
			repeated = 1;
		conds[i] = (struct scmp_arg_cmp){.arg = arg, .op = compare_op(op),
						 .datum_a = num("value", v1, 10), .datum_b = num("value", v2, 10)};
	}
	int rc;
	if (n == 0 || !repeated) {
		rc = seccomp_rule_add_array(ctx, a, nr, n, conds);
		if (rc < 0)
			fail("seccomp: add rule for %s: %s", name, strerror(-rc));
		return;
	}
	for (int i = 0; i < n; i++) {
		rc = seccomp_rule_add_array(ctx, a, nr, 1, &conds[i]);
		if (rc < 0)
			fail("seccomp: add rule for %s: %s", name, strerror(-rc));
	}
}

#define X32_SYSCALL_BIT 0x40000000u
#define MAX_STUB 16

// stub_arch is one section of the -ENOSYS stub: calls of one native arch
// (and, on x86_64, of one of its two ABIs) above the largest syscall
// number the profile names there.
struct stub_arch {
	uint32_t token;	 // libseccomp's arch token
	uint32_t audit;	 // the AUDIT_ARCH_* the kernel reports
	uint32_t max;	 // largest syscall number named for it
};

// largest_syscall is the largest number any rule's name has on arch, 0 if
// none: every rule counts, whatever its action, unknown names do not, as
// in runc's patchbpf.
static uint32_t largest_syscall(struct req *r, uint32_t arch)
{
	uint32_t max = 0;
	char name[128];
	for (int i = 0; i < r->nsc_rules; i++) {
		if (rule_name(r->sc_rules[i], name, sizeof(name)) < 0)
			fail("seccomp: bad rule");
		int nr = seccomp_syscall_resolve_name_arch(arch, name);
		if (nr > 0 && (uint32_t)nr > max)
			max = (uint32_t)nr;
	}
	return max;
}

static void emit(struct sock_filter *out, size_t *n, struct sock_filter insn)
{
	out[(*n)++] = insn;
}

// enosys_stub writes runc's -ENOSYS stub for the filter's arches to out
// and returns its length. Syscalls newer than any the profile names would
// otherwise get the default action (EPERM, say), which makes libc treat an
// available-in-principle syscall as forbidden instead of falling back to
// an older one. Each section reloads what it tests and falls through when
// it does not apply, so sections need no long jumps and the filter that
// follows starts as libseccomp wrote it (loading the arch itself).
static size_t enosys_stub(struct req *r, struct sock_filter *out)
{
	struct stub_arch archs[MAX_STUB];
	int narchs = 0;
	for (int i = 0; i < r->nsc_arches && narchs < MAX_STUB; i++) {
		uint32_t tok = seccomp_arch_resolve_name(r->sc_arches[i]);
		int dup = 0;
		for (int j = 0; j < narchs; j++)
			dup |= archs[j].token == tok;
		if (tok == 0 || dup)
			continue;
		uint32_t max = largest_syscall(r, tok);
		if (max == 0)
			continue;
		// SCMP_ARCH_X32 is libseccomp's own token: the kernel reports x32
		// calls as x86_64 ones with X32_SYSCALL_BIT in the number.
		uint32_t audit = tok == SCMP_ARCH_X32 ? AUDIT_ARCH_X86_64 : tok;
		archs[narchs++] = (struct stub_arch){.token = tok, .audit = audit, .max = max};
	}
	size_t n = 0;
	for (int i = 0; i < narchs; i++) {
		struct stub_arch *a = &archs[i];
		int x86_64 = a->token == SCMP_ARCH_X86_64, x32 = a->token == SCMP_ARCH_X32;
		int s390 = a->token == SCMP_ARCH_S390 || a->token == SCMP_ARCH_S390X;
		// After the arch test: load nr, [ABI test], [s390 setup(0)], jgt, ret.
		uint8_t rest = 2 + (x86_64 || x32) + s390 + 1;
		emit(out, &n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
		emit(out, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a->audit, 0, rest));
		emit(out, &n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
		uint8_t left = 1 + s390 + 1; // instructions after the ABI test
		if (x86_64)
			emit(out, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, left, 0));
		if (x32)
			emit(out, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, 0, left));
		// s390 multiplexes large syscall numbers through setup(2), 0, which
		// an unknown one is left as.
		if (s390)
			emit(out, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0));
		emit(out, &n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, a->max, 0, 1));
		emit(out, &n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SCMP_ACT_ERRNO(ENOSYS)));
	}
	return n;
}

// export_filter is libseccomp's compiled program for ctx.
static struct sock_filter *export_filter(scmp_filter_ctx ctx, size_t *len)
{
	int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	if (fd < 0)
		fail("seccomp: memfd: %s", strerror(errno));
	int rc = seccomp_export_bpf(ctx, fd);
	if (rc < 0)
		fail("seccomp: export filter: %s", strerror(-rc));
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % sizeof(struct sock_filter) || size > BPF_MAXINSNS * (off_t)sizeof(struct sock_filter))
		fail("seccomp: exported filter has %lld bytes", (long long)size);
	struct sock_filter *prog = malloc(size);
	if (!prog)
		fail("seccomp: out of memory");
	if (pread(fd, prog, size, 0) != size)
		fail("seccomp: read exported filter: %s", strerror(errno));
	close(fd);
	*len = size / sizeof(struct sock_filter);
	return prog;
}

// compile_seccomp builds the process's filter before anything is joined;
// the child then only loads it. Names this libseccomp does not know are
// reported to crid.
static void compile_seccomp(struct req *r, struct sock_fprog *out)
{
	char *save;
	char *def = strtok_r(r->sc_default, " ", &save);
	char *err = strtok_r(NULL, " ", &save);
	if (!def || !err)
		fail("seccomp: bad default");
	uint32_t d = action(def, (int)num("errno", err, 10));
	scmp_filter_ctx ctx = seccomp_init(d);
	if (!ctx)
		fail("seccomp: init failed");
	for (int i = 0; i < r->nsc_arches; i++) {
		uint32_t arch = seccomp_arch_resolve_name(r->sc_arches[i]);
		if (arch == 0) {
			warn(r, "seccomp: arch %s unknown to libseccomp %u.%u.%u, left out of the filter",
			     r->sc_arches[i], SCMP_VER_MAJOR, SCMP_VER_MINOR, SCMP_VER_MICRO);
			continue;
		}
		int rc = seccomp_arch_add(ctx, arch);
		if (rc < 0 && rc != -EEXIST)
			fail("seccomp: add arch %s: %s", r->sc_arches[i], strerror(-rc));
	}
	// The stub counts every rule's name: take it before add_rule cuts
	// the rules up.
	struct sock_filter stub[MAX_STUB * 8];
	size_t nstub = r->sc_enosys ? enosys_stub(r, stub) : 0;
	char unknown[1024] = "";
	for (int i = 0; i < r->nsc_rules; i++)
		add_rule(ctx, d, r->sc_rules[i], unknown, sizeof(unknown));
	if (unknown[0])
		warn(r, "seccomp: syscalls unknown to libseccomp %u.%u.%u, left out of the filter (as runc does):%s",
		     SCMP_VER_MAJOR, SCMP_VER_MINOR, SCMP_VER_MICRO, unknown);
	size_t nprog;
	struct sock_filter *prog = export_filter(ctx, &nprog);
	seccomp_release(ctx);
	if (nstub + nprog > BPF_MAXINSNS)
		fail("seccomp: filter has %zu instructions, more than %d", nstub + nprog, BPF_MAXINSNS);
	struct sock_filter *all = malloc((nstub + nprog) * sizeof(*all));
	if (!all)
		fail("seccomp: out of memory");
	memcpy(all, stub, nstub * sizeof(*all));
	memcpy(all + nstub, prog, nprog * sizeof(*all));
	free(prog);
	*out = (struct sock_fprog){.len = (unsigned short)(nstub + nprog), .filter = all};
}

// load_seccomp installs the compiled filter on the calling process. Like
// runc, it leaves no_new_privs to the spec: without it the load needs
// CAP_SYS_ADMIN, which the caller arranges.
static void load_seccomp(struct sock_fprog *prog)
{
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0) < 0)
		fail("seccomp: load filter: %s", strerror(errno));
}

static void apply_bounding(uint64_t bnd)
{
	for (int cap = 0; cap < 64; cap++) {
		if (bnd & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			fail("drop capability %d from the bounding set: %s", cap, strerror(errno));
	}
}

static void apply_caps(struct req *r)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	for (int i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)(r->caps[1] >> (32 * i));
		data[i].permitted = (uint32_t)(r->caps[2] >> (32 * i));
		data[i].inheritable = (uint32_t)(r->caps[3] >> (32 * i));
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("set capabilities: %s", strerror(errno));
	for (int cap = 0; cap < 64; cap++) {
		if (!(r->caps[4] & (1ULL << cap)))
			continue;
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
			fail("raise ambient capability %d: %s", cap, strerror(errno));
	}
}

// open_host_proc holds the host's /proc for apply_apparmor. It runs before
// the container's mount namespace is joined: the container's own /proc may
// be a mount it controls (CVE-2025-52881 redirected runc's writes to such
// attr files), the host's is not.
static int open_host_proc(void)
{
	int fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fail("open /proc: %s", strerror(errno));
	struct statfs st;
	if (fstatfs(fd, &st) < 0)
		fail("statfs /proc: %s", strerror(errno));
	if (st.f_type != PROC_SUPER_MAGIC)
		fail("/proc is not procfs (type %#lx)", (unsigned long)st.f_type);
	return fd;
}

// apply_apparmor makes the next execve enter the profile, as runc (and
// libapparmor's aa_change_onexec) do: "exec NAME" written to the calling
// thread's attr file. A task may only write its own, and the host's /proc
// resolves thread-self for a task of any pid namespace below it.
static void apply_apparmor(int procfd, const char *profile)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "exec %s", profile);
	if (n < 0 || n >= (int)sizeof(buf))
		fail("apparmor: profile name too long");
	int fd = openat(procfd, "thread-self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ENOENT) // kernels before 5.8: the LSM-neutral file
		fd = openat(procfd, "thread-self/attr/exec", O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		fail("apparmor: open the exec attribute: %s", strerror(errno));
	if (write(fd, buf, n) != n)
		fail("apparmor: set profile %s for exec: %s", profile, strerror(errno));
	close(fd);
	close(procfd);
}

static const char *getenv_in(char **env, int n, const char *name)
{
	size_t l = strlen(name);
	for (int i = n - 1; i >= 0; i--)
		if (!strncmp(env[i], name, l) && env[i][l] == '=')
			return env[i] + l + 1;
	return NULL;
}

// execute runs argv[0] found through the process's own PATH (not ours),
// as runc does; it returns only on failure.
static void execute(struct req *r)
{
	const char *file = r->argv[0];
	if (strchr(file, '/')) {
		execve(file, r->argv, r->env);
		fail("exec %s: %s", file, strerror(errno));
	}
	const char *path = getenv_in(r->env, r->nenv, "PATH");
	if (!path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	int saved = ENOENT;
	char buf[4096];
	while (*path) {
		const char *colon = strchrnul(path, ':');
		size_t dl = colon - path;
		if (dl == 0) {
			dl = 1;
			path = ".";
		}
		if (dl + 1 + strlen(file) + 1 <= sizeof(buf)) {
			memcpy(buf, path, dl);
			buf[dl] = '/';
			strcpy(buf + dl + 1, file);
			execve(buf, r->argv, r->env);
			if (errno != ENOENT && errno != ENOTDIR)
				saved = errno;
		}
		path = *colon ? colon + 1 : colon;
		if (path[-1] != ':' && *path == '\0')
			break;
	}
	if (saved == ENOENT)
		fail("exec: \"%s\": executable file not found in $PATH", file);
	fail("exec %s: %s", file, strerror(saved));
}

static pid_t child_pid;

// stop kills the process when crid cancels the exec (SIGTERM). The helper
// must outlive its child: a child orphaned at crid's level would be
// adopted by crid (a subreaper) and, until reaped, hold up the teardown of
// its pid namespace.
static void stop(int sig)
{
	(void)sig;
	if (child_pid > 0)
		kill(child_pid, SIGKILL);
}

// parent_alive tells, through the liveness pipe, whether the helper that
// forked us still runs: getppid() says 0 across the pid namespace.
static int parent_alive(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 0;
}

// child becomes the process. filter is the compiled seccomp filter, NULL
// for none.
static void child(struct req *r, int alive_fd, struct sock_fprog *filter)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || !parent_alive(alive_fd))
		_exit(255);
	for (int i = 0; i < r->nrlimits; i++) {
		struct rlimit l = {.rlim_cur = r->rlimits[i].soft, .rlim_max = r->rlimits[i].hard};
		if (setrlimit(r->rlimits[i].res, &l) < 0)
			fail("set rlimit %d: %s", r->rlimits[i].res, strerror(errno));
	}
	umask(r->has_umask ? r->umask : 022);
	if (r->cwd && chdir(r->cwd) < 0)
		fail("chdir to cwd (\"%s\") set in config.json failed: %s", r->cwd, strerror(errno));
	// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which
	// the process may be about to lose: load it first (runc's order).
	if (filter && !r->nnp)
		load_seccomp(filter);
	apply_bounding(r->caps[0]);
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("keep capabilities: %s", strerror(errno));
	if (setgroups(r->ngroups, r->groups) < 0)
		fail("setgroups: %s", strerror(errno));
	if (setresgid(r->gid, r->gid, r->gid) < 0)
		fail("setgid %u: %s", r->gid, strerror(errno));
	if (setresuid(r->uid, r->uid, r->uid) < 0)
		fail("setuid %u: %s", r->uid, strerror(errno));
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("clear keep capabilities: %s", strerror(errno));
	apply_caps(r);
	if (r->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail("set no_new_privs: %s", strerror(errno));
	// Changing credentials cleared the parent-death signal.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || !parent_alive(alive_fd))
		_exit(255);
	close(alive_fd);
	// The profile after the credentials, before the last filter: runc's
	// order. The helper is unconfined, which may enter any profile, with
	// no_new_privs too.
	if (r->apparmor)
		apply_apparmor(r->procfd, r->apparmor);
	// With no_new_privs the filter comes last, as in runc: after it only
	// execve runs, the one syscall every profile must allow anyway.
	if (filter && r->nnp)
		load_seccomp(filter);
	execute(r);
}

int main(void)
{
	// First of all: see the comment at the top. Children inherit it, and
	// changing credentials never makes a process dumpable again.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("set not dumpable: %s", strerror(errno));
	// Nothing but stdio may reach the process: not our descriptors, nor
	// any crid itself inherited without close-on-exec.
	if (fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC) < 0 || fcntl(PIDFD, F_SETFD, FD_CLOEXEC) < 0)
		_exit(255);
	if (syscall(SYS_close_range, STATUS_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail("close_range: %s", strerror(errno));
	struct req r = {0};
	size_t len;
	char *buf = read_all(REQ_FD, &len);
	close(REQ_FD);
	parse(&r, buf, len);
	struct sock_fprog filter, *fp = NULL;
	if (r.sc_default) {
		compile_seccomp(&r, &filter);
		fp = &filter;
	}
	if (r.warnings[0]) {
		ssize_t w = write(STATUS_FD, r.warnings, strlen(r.warnings));
		(void)w;
	}

	// Host paths: before the mount namespace changes.
	if (r.apparmor)
		r.procfd = open_host_proc();
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", getpid());
	for (int i = 0; i < r.ncgroups; i++) {
		char path[4096];
		if (snprintf(path, sizeof(path), "%s/cgroup.procs", r.cgroups[i]) >= (int)sizeof(path))
			fail("cgroup path too long");
		write_file(path, pid);
	}
	if (r.oom)
		write_file("/proc/self/oom_score_adj", r.oom);
	if (r.ns && setns(PIDFD, (int)r.ns) < 0)
		fail("join namespaces %#lx of the container: %s", r.ns, strerror(errno));
	close(PIDFD);

	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0)
		fail("pipe: %s", strerror(errno));
	struct sigaction sa = {.sa_handler = stop};
	sigemptyset(&sa.sa_mask);
	int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	sigset_t block, old;
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&block, sigs[i]);
	// Stopping works once the child's pid is known.
	sigprocmask(SIG_BLOCK, &block, &old);
	child_pid = fork();
	if (child_pid < 0)
		fail("fork: %s", strerror(errno));
	if (child_pid == 0) {
		close(alive[1]);
		sigprocmask(SIG_SETMASK, &old, NULL);
		child(&r, alive[0], fp);
	}
	close(alive[0]);
	close(STATUS_FD);
	if (r.apparmor)
		close(r.procfd); // the child's now; the helper keeps no handle on the host
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
	int status;
	for (;;) {
		pid_t w = waitpid(child_pid, &status, 0);
		if (w == child_pid)
			break;
		if (w < 0 && errno != EINTR)
			_exit(255);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
