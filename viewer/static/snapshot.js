// The loader of an offline snapshot (`vptlens serve --export`, viewer/export.py), a classic script run by the
// exported page only. It answers the front end's requests from the API answers embedded in the page, then loads
// the viewer's modules, embedded verbatim, as blob: URLs: a page opened from disk can load no module from a file.

(() => {
  const embedded = (id) => JSON.parse(document.getElementById(id).textContent);
  const snapshot = embedded("vptlens-snapshot");
  const modules = embedded("vptlens-modules");
  const {answers, ...about} = snapshot;
  window.VPTLENS_SNAPSHOT = about;  // util.js's SNAPSHOT: the player plays only these steps

  const bytes = (base64) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const json = (status, body) => new Response(JSON.stringify(body), {status, headers: {"content-type": "application/json"}});

  // The key an answer is stored under: the path and its query without the cache-busting n, sorted.
  function key(url) {
    const [path, query = ""] = String(url).split("?");
    const params = new URLSearchParams(query);
    params.delete("n");
    params.sort();
    const rest = params.toString();
    return rest ? `${path}?${rest}` : path;
  }

  window.fetch = async (url) => {
    const answer = answers[key(url)];
    if (!answer) {
      const [start, stop] = about.steps;
      return json(404, {error: `not in this snapshot (steps ${start}..${stop - 1}, attention heads `
        + `${about.heads.join(", ")}; frames, attention, traces and key frames only): export again with other --steps `
        + "or --export-heads, or open the episode with vptlens serve"});
    }
    if (answer.json !== undefined) return json(answer.status, answer.json);
    const headers = {"content-type": answer.type};
    if (answer.base64 !== undefined) return new Response(bytes(answer.base64), {status: answer.status, headers});
    const inflated = new Blob([bytes(answer.gzip)]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(inflated, {status: answer.status, headers});
  };

  if (!location.hash.startsWith(`#/episode/${about.episode}`)) {
    history.replaceState(null, "", `#/episode/${about.episode}?t=${about.steps[0]}`);
  }
  const urls = {};
  for (const name of modules.order) {  // each after its imports: its text names their blob: URLs
    let code = modules.sources[name];
    for (const dep of Object.keys(urls)) code = code.split(`from "./${dep}"`).join(`from "${urls[dep]}"`);
    urls[name] = URL.createObjectURL(new Blob([code], {type: "text/javascript"}));
  }
  import(urls[modules.order[modules.order.length - 1]]).catch((e) => {
    document.getElementById("main").textContent = `the snapshot could not start: ${e.message}`;
  });
})();
