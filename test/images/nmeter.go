package images

import v1 "github.com/google/go-containerregistry/pkg/v1"

// nmeterSource stands in for busybox's nmeter applet, which Debian's
// busybox lacks and the node e2e suite's container lifecycle specs call to
// log the time with milliseconds (`nmeter -d0 '%3t' | head -n1`, since
// busybox date has no sub-second format). It implements what the suite
// uses: -d MSEC (delay between lines; 0 none, -1 print once) and a format
// whose %[N]t is the local time HH:MM:SS with N fraction digits (0-6) and
// %% a percent sign; other characters are printed as they are. Each line
// ends with a newline; it stops when its output is closed.
const nmeterSource = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int line(const char *fmt) {
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			putchar(*p);
			continue;
		}
		p++;
		int digits = 0;
		if (*p >= '0' && *p <= '9')
			digits = *p++ - '0';
		if (*p == 't') {
			printf("%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
			if (digits > 6)
				digits = 6;
			if (digits > 0) {
				long frac = tv.tv_usec;
				for (int i = digits; i < 6; i++)
					frac /= 10;
				printf(".%0*ld", digits, frac);
			}
		} else if (*p == '%') {
			putchar('%');
		} else if (*p == '\0') {
			break;
		} else {
			fprintf(stderr, "nmeter: unsupported format %%%c\n", *p);
			return -1;
		}
	}
	putchar('\n');
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : -1;
}

int main(int argc, char **argv) {
	long delay = 1000;
	int opt;
	while ((opt = getopt(argc, argv, "d:")) != -1) {
		if (opt != 'd') {
			fprintf(stderr, "usage: nmeter [-d MSEC] FORMAT\n");
			return 2;
		}
		delay = strtol(optarg, NULL, 10);
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: nmeter [-d MSEC] FORMAT\n");
		return 2;
	}
	for (;;) {
		if (line(argv[optind]) != 0)
			return 1;
		if (delay < 0)
			return 0;
		if (delay > 0)
			usleep(delay * 1000);
	}
}
`

// nmeterLayer holds the nmeter stand-in at /bin/nmeter, static.
func (b *builder) nmeterLayer() (v1.Layer, error) {
	return b.layer("nmeter", func() (*tree, error) {
		bin, err := compileC([]byte(nmeterSource))
		if err != nil {
			return nil, err
		}
		t := newTree()
		t.file("/bin/nmeter", 0o755, bin)
		return t, nil
	})
}
