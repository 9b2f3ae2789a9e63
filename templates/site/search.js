// The search page: reads ?q=&month=&topic=&sort= and shows what the Pagefind index finds.
// Text from the index is always set as text, never parsed as HTML, except the <mark> around hits.
const form = document.getElementById("search-form");
const status = document.getElementById("status");
const list = document.getElementById("results");
const params = new URLSearchParams(location.search);
const LIMIT = 50;

function fill(select, counts, chosen) {
  for (const value of Object.keys(counts).sort().reverse()) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = `${value} (${counts[value]})`;
    option.selected = value === chosen;
    select.append(option);
  }
}

function excerpt(html) {
  // Pagefind marks hits with <mark>; everything else becomes text.
  const out = document.createElement("p");
  const parts = html.split(/(<mark>|<\/mark>)/);
  let marked = false;
  for (const part of parts) {
    if (part === "<mark>") { marked = true; continue; }
    if (part === "</mark>") { marked = false; continue; }
    // Pagefind escapes only < and > in the text around its <mark>s (pagefind.js: raw_content),
    // not &: decoding every entity would show a page's literal "R&amp;D" as "R&D".
    const text = part.replaceAll("&lt;", "<").replaceAll("&gt;", ">");
    if (marked) {
      const mark = document.createElement("mark");
      mark.textContent = text;
      out.append(mark);
    } else {
      out.append(text);
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
  item.append(heading, meta, excerpt(data.excerpt || ""));
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
