//go:build ignore

// The line above keeps the go tool from treating this file as cgo source;
// it is a comment to C. gcc builds it: gcc -static -Os -s -o pause pause.c
/*
 * pause: the process that holds a pod sandbox's namespaces.
 *
 * It sleeps until SIGTERM or SIGINT and then exits 0. When it is PID 1 of a
 * shared PID namespace, orphaned processes are re-parented to it, so it reaps
 * every child on SIGCHLD to keep zombies from piling up.
 *
 * Built with `gcc -static -Os` so the image needs no libraries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "crid-pause 1.0"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

static void on_child(int sig) {
	int saved = errno;
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int install(int sig, void (*fn)(int), int flags) {
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigfillset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
	sigset_t blocked, waitmask;

	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		printf("%s\n", PAUSE_VERSION);
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1\n");

	if (install(SIGINT, on_stop, 0) < 0 || install(SIGTERM, on_stop, 0) < 0 ||
	    install(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0) {
		perror("pause: sigaction");
		return 1;
	}

	/*
	 * Block the signals we wait for and let sigsuspend unblock them
	 * atomically: a signal arriving between the check of stop_signal and
	 * the wait cannot be lost.
	 */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &blocked, &waitmask) < 0) {
		perror("pause: sigprocmask");
		return 1;
	}
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGCHLD);

	while (!stop_signal)
		sigsuspend(&waitmask);

	fprintf(stderr, "pause: shutting down on signal %d\n", (int)stop_signal);
	return 0;
}
