// The search page: reads ?q=&month=&topic=&sort= and shows what the Pagefind index finds.
// Text from the index is always set as text, never parsed as HTML, except the <mark> around hits.
const form = document.getElementById("search-form");
const status = document.getElementById("status");
const list = document.getElementById("results");
const params = new URLSearchParams(location.search);
const LIMIT = 50;
const WORDS = 30; // an excerpt's length in words, as Pagefind's own

function fill(select, counts, chosen) {
  for (const value of Object.keys(counts).sort().reverse()) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = `${value} (${counts[value]})`;
    option.selected = value === chosen;
    select.append(option);
  }
}

function excerpt(data) {
  // A passage of what the page shows around the hits, the hits marked; every word set as text.
  // Pagefind's own excerpt may fall in the search terms that end the indexed text (the Korean
  // stems and joined words of paper.html's data-terms), which read as a jumble: those are left
  // out here. Words are split as Pagefind splits them (pagefind.js build_excerpt), so its hit
  // locations index them.
  const out = document.createElement("p");
  const content = data.content || "";
  const zws = content.includes("\u200B"); // words segmented by Pagefind, shown without spaces
  const words = zws ? content.split("\u200B") : content.split(/[\r\n\s]+/g);
  const shown = Math.max(0, words.length - Number(data.meta.terms || 0));
  const hits = new Set((data.locations || []).filter((at) => at < shown));
  if (hits.size === 0) {
    // Found only through the terms: the paper's summary instead, unmarked.
    out.textContent = (data.meta.summary || "").split(/\s+/).slice(0, WORDS).join(" ");
    return out;
  }
  // The window of WORDS words within the shown text holding the most hits, from a hit's
  // neighbourhood, the earliest on a tie.
  let start = 0;
  let most = -1;
  for (const at of hits) {
    const from = Math.max(0, Math.min(at - 3, shown - WORDS));
    let count = 0;
    for (const other of hits) if (other >= from && other < from + WORDS) count += 1;
    if (count > most || (count === most && from < start)) [start, most] = [from, count];
  }
  const end = Math.min(shown, start + WORDS);
  for (let at = start; at < end; at += 1) {
    if (at > start && !zws) out.append(" ");
    if (hits.has(at)) {
      const mark = document.createElement("mark");
      mark.textContent = words[at];
      out.append(mark);
    } else {
      out.append(words[at]);
    }
  }
  return out;
}

function show(data) {
  const item = document.createElement("li");
  const heading = document.createElement("h2");
  const link = document.createElement("a");
  link.href = data.url;
  link.textContent = data.meta.title;
  heading.append(link);
  const meta = document.createElement("p");
  meta.className = "meta";
  // A paper without authors has no authors meta: leave it out rather than show "undefined".
  meta.textContent = [data.meta.date, `추천 ${data.meta.votes}`, data.meta.authors]
    .filter(Boolean)
    .join(" · ");
  item.append(heading, meta, excerpt(data));
  list.append(item);
}

async function run() {
  const query = (params.get("q") || "").trim();
  const month = params.get("month") || "";
  const topic = params.get("topic") || "";
  const sort = params.get("sort") || "";
  form.q.value = query;
  form.sort.value = sort;
  let pagefind;
  try {
    pagefind = await import("./pagefind/pagefind.js");
  } catch (error) {
    status.textContent = "검색 색인이 아직 없습니다.";
    return;
  }
  const filters = await pagefind.filters();
  fill(form.month, filters.month || {}, month);
  fill(form.topic, filters.topic || {}, topic);
  if (!query && !month && !topic) {
    status.textContent = "검색어를 입력하세요.";
    return;
  }
  const chosen = {};
  if (month) chosen.month = month;
  if (topic) chosen.topic = topic;
  const options = { filters: chosen };
  if (sort) options.sort = { [sort]: "desc" };
  const search = await pagefind.search(query || null, options);
  const results = await Promise.all(search.results.slice(0, LIMIT).map((r) => r.data()));
  status.textContent = `${search.results.length}편 찾음`;
  document.title = query ? `${query} — ${document.title}` : document.title;
  for (const data of results) show(data);
}

run();
