/* A WebSocket echo server on a Unix socket, for the benchmark: it must never be the bottleneck.
 *
 * Usage: echo_server PATH. Prints "ready" on stdout once listening; runs until killed.
 * One thread, poll(2), any number of clients. The opening handshake (RFC 6455 §4.2) answers any Upgrade
 * request with 101 and the header Codex sends (x-codex-websocket-max-unfragmented-message-bytes). Every client
 * frame comes back as a server frame with the same FIN bit, opcode and payload, unmasked (§5.3), streamed as it
 * arrives, so a 64 MiB message costs no more memory than a small one; a ping comes back as a pong, a close as
 * the same close, after which the connection ends. While more than MAX_PENDING_BYTES of a client's echo wait
 * to be written, the server stops reading from it (backpressure).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define READ_BYTES (1 << 20)
#define MAX_HEADER_BYTES 16384
/* Echo bytes held for a client that is not reading before the server stops reading from it. Not 0: a client
 * that does not read while its own write is blocked (websocat 1.13 with large frames) would deadlock. */
#define MAX_PENDING_BYTES (16 << 20)

/* ---- SHA-1 (FIPS 180-4) and base64, only for Sec-WebSocket-Accept ---- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *buf = calloc(total, 1);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---- one client ---- */

struct client {
    int fd;
    int upgraded;
    int closing;                    /* a close frame has been echoed: end once it is written */
    unsigned char *in;              /* READ_BYTES: unparsed input (a partial frame header at most, once upgraded) */
    size_t in_len;
    unsigned char *out;             /* echo not yet written */
    size_t out_len, out_off, out_cap;
    int in_payload;                 /* inside a frame's payload */
    uint64_t remaining;             /* payload bytes of the current frame still to come */
    unsigned char mask[4];
    unsigned mask_at;
    int opcode;
};

static struct client clients[MAX_CLIENTS];

static void out_reserve(struct client *c, size_t more) {
    if (c->out_len + more <= c->out_cap) return;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + more > c->out_cap) {
        c->out_cap = (c->out_len + more) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out) { perror("realloc"); exit(1); }
    }
}

static void drop(struct client *c) {
    close(c->fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Answer the Upgrade request once its header is complete; 0 when more bytes are needed, -1 on error. */
static int handshake(struct client *c) {
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return c->in_len > MAX_HEADER_BYTES ? -1 : 0;
    size_t header_len = (size_t)(end - c->in) + 4;
    char key[128] = {0};
    for (unsigned char *line = c->in; line < end;) {
        unsigned char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        static const char name[] = "sec-websocket-key:";
        if ((size_t)(eol - line) > sizeof name - 1 && strncasecmp((char *)line, name, sizeof name - 1) == 0) {
            unsigned char *v = line + sizeof name - 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            unsigned char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if ((size_t)(ve - v) >= 64) return -1;
            memcpy(key, v, (size_t)(ve - v));
        }
        line = eol + 2;
    }
    if (!key[0]) return -1;
    char joined[192];
    snprintf(joined, sizeof joined, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char digest[20];
    sha1((unsigned char *)joined, strlen(joined), digest);
    char accept[32];
    base64(digest, 20, accept);
    char response[512];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\nx-codex-websocket-max-unfragmented-message-bytes: 16777216\r\n\r\n",
                     accept);
    out_reserve(c, (size_t)n);
    memcpy(c->out + c->out_len, response, (size_t)n);
    c->out_len += (size_t)n;
    memmove(c->in, c->in + header_len, c->in_len - header_len);
    c->in_len -= header_len;
    c->upgraded = 1;
    return 1;
}

static void unmask_into(struct client *c, const unsigned char *src, size_t n) {
    unsigned char *dst = c->out + c->out_len;
    size_t i = 0;
    unsigned char m[8];
    for (int j = 0; j < 8; j++) m[j] = c->mask[(c->mask_at + j) & 3];
    uint64_t m64;
    memcpy(&m64, m, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= m64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ m[i & 7];
    c->mask_at = (c->mask_at + (unsigned)n) & 3;
    c->out_len += n;
}

/* Echo what the input holds; -1 on a protocol error (an unmasked client frame). */
static int echo(struct client *c) {
    size_t at = 0;
    while (at < c->in_len) {
        if (c->in_payload) {
            size_t n = c->in_len - at;
            if (n > c->remaining) n = (size_t)c->remaining;
            out_reserve(c, n);
            unmask_into(c, c->in + at, n);
            at += n;
            c->remaining -= n;
            if (!c->remaining) {
                c->in_payload = 0;
                if (c->opcode == 8) c->closing = 1;
            }
            continue;
        }
        size_t avail = c->in_len - at;
        const unsigned char *h = c->in + at;
        if (avail < 2) break;
        if (!(h[1] & 0x80)) return -1;
        uint64_t len = h[1] & 0x7f;
        size_t need = 2;
        if (len == 126) need = 4;
        else if (len == 127) need = 10;
        if (avail < need + 4) break;
        if (len == 126) len = (uint64_t)h[2] << 8 | h[3];
        else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        }
        memcpy(c->mask, h + need, 4);
        c->mask_at = 0;
        c->opcode = h[0] & 0x0f;
        unsigned char b0 = h[0];
        if (c->opcode == 9) b0 = (unsigned char)((b0 & 0xf0) | 0x0a); /* ping -> pong */
        out_reserve(c, 10);
        unsigned char *o = c->out + c->out_len;
        o[0] = b0;
        if (len < 126) { o[1] = (unsigned char)len; c->out_len += 2; }
        else if (len < 65536) { o[1] = 126; o[2] = (unsigned char)(len >> 8); o[3] = (unsigned char)len; c->out_len += 4; }
        else {
            o[1] = 127;
            for (int i = 0; i < 8; i++) o[2 + i] = (unsigned char)(len >> (56 - 8 * i));
            c->out_len += 10;
        }
        at += need + 4;
        c->remaining = len;
        c->in_payload = len > 0;
        if (!len && c->opcode == 8) c->closing = 1;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
    return 0;
}

static void on_readable(struct client *c) {
    ssize_t n = read(c->fd, c->in + c->in_len, READ_BYTES - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { drop(c); return; }
    c->in_len += (size_t)n;
    if (!c->upgraded) {
        int r = handshake(c);
        if (r < 0) { drop(c); return; }
        if (!r) return;
    }
    if (echo(c) < 0) drop(c);
}

static void on_writable(struct client *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            drop(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->closing) drop(c);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof addr.sun_path) { fprintf(stderr, "socket path too long\n"); return 2; }
    strcpy(addr.sun_path, argv[1]);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 64)) { perror("bind/listen"); return 1; }
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct pollfd fds[MAX_CLIENTS + 1];
        int map[MAX_CLIENTS + 1];
        int nfds = 0;
        fds[nfds].fd = lfd; fds[nfds].events = POLLIN; map[nfds++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0) continue;
            fds[nfds].fd = clients[i].fd;
            size_t pending = clients[i].out_len - clients[i].out_off;
            fds[nfds].events = (short)((pending < MAX_PENDING_BYTES ? POLLIN : 0) | (pending ? POLLOUT : 0));
            map[nfds++] = i;
        }
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        for (int k = 1; k < nfds; k++) {
            struct client *c = &clients[map[k]];
            if (c->fd < 0 || !fds[k].revents) continue;
            if (fds[k].revents & (POLLIN | POLLHUP | POLLERR) && (fds[k].events & POLLIN)) on_readable(c);
            else if (fds[k].revents & (POLLHUP | POLLERR)) { drop(c); continue; }
            if (c->fd >= 0 && c->out_off < c->out_len) on_writable(c);
        }
        if (fds[0].revents & POLLIN) {
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS; i++)
                    if (clients[i].fd < 0) { slot = i; break; }
                if (slot < 0) { close(fd); continue; }
                clients[slot].fd = fd;
                clients[slot].in = malloc(READ_BYTES);
                clients[slot].in_len = 0;
            }
        }
    }
}
