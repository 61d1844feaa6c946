// What the interop suites share besides child processes (processes.mjs).

/** Resolves with the first argument of the next `event` on `socket`; rejects after `ms`. */
export function next(socket, event, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${ms} ms`)), ms);
    socket.once(event, (data) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

/** Runs `body(cleanups)`, then every function it pushed on `cleanups`, last first. */
export async function withCleanups(body) {
  const cleanups = [];
  try {
    await body(cleanups);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}
