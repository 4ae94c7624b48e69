// The course's server, reduced to what the benchmark compares: POST / adds the JSON body's
// increment with one INCRBY and answers {"count": N}. PORT and REDIS_URL from the environment.
const express = require("express");
const { createClient } = require("redis");

async function main() {
  const redis = createClient({ url: process.env.REDIS_URL });
  await redis.connect();
  const app = express();
  app.use(express.json());
  app.post("/", async (req, res) => {
    const count = await redis.incrBy("{microservices}:count", req.body.increment || 1);
    res.json({ count });
  });
  app.get("/probe/readiness", (_req, res) => res.json({ status: "ready" }));
  app.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("ready"));
}

main();
