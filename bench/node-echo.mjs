// node-echo: the Node reference for the transport benchmark: socket.io 4.8 (from
// /work/main/node_modules) with the same echo handler engram has, WebSocket transport.
//
//   node bench/node-echo.mjs [port]      (0 or absent: an ephemeral port)
//
// Prints "port N" on stdout once listening; stops on SIGINT/SIGTERM.
// Handlers: `echo` (data, ack?) acks with data, or emits `echo` back without an ack;
// `message-with-ack` acks with the same arguments (the reference test server's handler).
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 1e6,
});

io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
    else socket.emit("echo", ...args);
  });
  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(...args);
  });
});

http.listen(port, "127.0.0.1", () => {
  process.stdout.write(`port ${http.address().port}\n`);
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
