// Fit every slide of a deck to the deck's size (inlined by saliency_helpers/course/export.py;
// called once reveal.js is ready and every chart is drawn, so every size is final).
//
// The rules, in this order, per slide:
//  1. Nothing is wider than the slide: a chart wider than the slide is scaled down (CSS zoom,
//     never cropped), a printed table that is too wide gets a smaller font (down to 11 px) and
//     is wrapped beyond that, printed sentences are wrapped, any other wide block (an HTML
//     table, a formula) is scaled down (to no less than 50 %).
//  2. Nothing is taller than the slide: a slide whose content runs past the bottom is split
//     before the first block that does not fit (a paragraph, a list item, a code cell, one
//     output); the rest continues on a new vertical slide marked "(continued)". A heading
//     stays with what follows it, a code cell with its first output.
//  3. A single block taller than a slide (a big chart grid) is scaled down to fit, charts
//     first (to no less than 35 %), then the whole slide (to no less than 60 %); if even that
//     does not fit, the slide scrolls (and the deck's fit test fails).
// A folded code cell opened during the talk makes its slide scroll rather than overflow.
/* exported saliencyFitSlides */
function saliencyFitSlides(Reveal) {
  "use strict";
  const config = Reveal.getConfig();
  const limit = config.height - 4;
  const root = document.querySelector(".reveal");
  const MIN_FONT = 11;
  const MIN_CHART_ZOOM = 0.35;
  const MIN_SLIDE_ZOOM = 0.6;
  const MIN_BLOCK_ZOOM = 0.5;
  const SPLIT_MARGIN = 24;
  const BLOCKS = [
    ".jp-MarkdownCell .jp-RenderedHTMLCommon > :not(ul):not(ol)",
    ".jp-MarkdownCell .jp-RenderedHTMLCommon > ul > li",
    ".jp-MarkdownCell .jp-RenderedHTMLCommon > ol > li",
    ".jp-CodeCell > details.saliency-code",
    ".jp-CodeCell > .jp-Cell-inputWrapper",
    ".jp-OutputArea-child",
    ".jp-RawCell",
  ].join(", ");
  const INPUTS = "details.saliency-code, .jp-Cell-inputWrapper";

  function ratio(slide) {
    return slide.getBoundingClientRect().width / slide.offsetWidth || 1;
  }
  function bottomIn(el, slide) {
    return (el.getBoundingClientRect().bottom - slide.getBoundingClientRect().top) / ratio(slide);
  }
  function shown(el) {
    return !el.closest("aside.notes") && el.getClientRects().length > 0;
  }
  function zoomOf(el) {
    return parseFloat(el.style.zoom) || 1;
  }
  function title(slide) {
    // the slide's own heading, else the last heading before it
    if (slide.dataset.saliencyTitle) { return slide.dataset.saliencyTitle; }
    let heading = slide.querySelector("h1, h2, h3, h4");
    for (const h of root.querySelectorAll(".slides :is(h1, h2, h3, h4)")) {
      if (heading || !(h.compareDocumentPosition(slide) & Node.DOCUMENT_POSITION_FOLLOWING)) {
        break;
      }
      if (!h.closest("aside.notes")) { heading = h; }
    }
    return heading ? heading.textContent.replace(/\u00b6/g, "").replace(/\s+/g, " ").trim() : "";
  }

  // 1. width
  function tooWide(el) {
    return el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1
      && getComputedStyle(el).overflowX !== "visible";
  }
  function fitWidth(slide) {
    for (const chart of slide.querySelectorAll(".saliency-chart")) {
      const drawn = chart.firstElementChild;
      if (drawn && drawn.offsetWidth > chart.clientWidth) {
        chart.style.zoom = chart.clientWidth / drawn.offsetWidth;
      }
    }
    for (const pre of slide.querySelectorAll(".jp-OutputArea-output > pre")) {
      // a printed table (columns aligned by runs of spaces) keeps its lines whole as long as
      // it can; printed sentences are simply wrapped
      const table = /\S {2,}\S/.test(pre.textContent);
      let size = parseFloat(getComputedStyle(pre).fontSize);
      while (table && pre.scrollWidth > pre.clientWidth + 1 && size > MIN_FONT) {
        size = Math.max(MIN_FONT, Math.floor(size * pre.clientWidth / pre.scrollWidth * 10) / 10);
        pre.style.fontSize = size + "px";
      }
      if (pre.scrollWidth > pre.clientWidth + 1) {
        pre.style.whiteSpace = "pre-wrap";
        pre.style.overflowWrap = "anywhere";
      }
    }
    const right = slide.getBoundingClientRect().right;
    for (const el of slide.querySelectorAll(BLOCKS)) {
      if (!shown(el)) { continue; }
      const wide = [el, ...el.querySelectorAll("*")].filter(shown).filter(tooWide);
      const over = el.getBoundingClientRect().right - right;
      let zoom = 1;
      for (const w of wide) { zoom = Math.min(zoom, w.clientWidth / w.scrollWidth); }
      if (over > 1) {
        const box = el.getBoundingClientRect();
        zoom = Math.min(zoom, (box.width - over) / box.width);
      }
      if (zoom < 1) { el.style.zoom = Math.max(MIN_BLOCK_ZOOM, zoomOf(el) * zoom); }
    }
  }

  // 2. height: split before the first block that does not fit
  function cutPoint(slide) {
    const blocks = [...slide.querySelectorAll(BLOCKS)].filter(shown)
      .filter((b, i, all) => !all.some(o => o !== b && o.contains(b)));
    // what comes below the last block (cell padding, margins) stays below it on any slide,
    // and a cut inside a list or a cell leaves that one's bottom margin too (SPLIT_MARGIN)
    const bottoms = blocks.map(b => bottomIn(b, slide));
    const below = Math.max(0, slide.scrollHeight - Math.max(...bottoms)) + SPLIT_MARGIN;
    let i = bottoms.findIndex(b => b > limit - below);
    if (i <= 0) { return null; }
    const isHeading = b => /^H[1-6]$/.test(b.tagName);
    while (i > 0 && isHeading(blocks[i - 1])) { i -= 1; }
    if (i > 0 && blocks[i].classList.contains("jp-OutputArea-child")
        && blocks[i - 1].matches(INPUTS)
        && blocks[i - 1].closest(".jp-CodeCell") === blocks[i].closest(".jp-CodeCell")) {
      i -= 1;
    }
    return i > 0 ? blocks[i] : null;
  }
  function splitBefore(slide, cut) {
    let first = cut;
    while (first.parentNode !== slide) {
      const parent = first.parentNode;
      const shell = parent.cloneNode(false);
      shell.removeAttribute("id");
      if (parent.tagName === "OL") {
        shell.start = (parent.start || 1) + [...parent.children].indexOf(first);
      }
      const rest = [];
      for (let n = first; n; n = n.nextSibling) { rest.push(n); }
      parent.after(shell);
      for (const n of rest) { shell.appendChild(n); }
      first = shell;
    }
    const next = document.createElement("section");
    const rest = [];
    for (let n = first; n; n = n.nextSibling) { rest.push(n); }
    for (const n of rest) { next.appendChild(n); }
    // a fragment that opens a continuation slide is shown with it: no blank slide to step past
    if (first.classList && first.classList.contains("fragment")) {
      first.classList.remove("fragment");
    }
    next.classList.add("saliency-continued");
    next.dataset.saliencyTitle = title(slide);
    slide.after(next);
    return next;
  }

  // 3. scale down what cannot be split
  function scaleDown(slide) {
    const charts = [...slide.querySelectorAll(".saliency-chart")].filter(shown);
    for (let k = 0; k < 8 && charts.length && slide.scrollHeight > limit; k++) {
      const factor = limit / slide.scrollHeight;
      for (const c of charts) { c.style.zoom = Math.max(MIN_CHART_ZOOM, zoomOf(c) * factor); }
      if (charts.every(c => zoomOf(c) <= MIN_CHART_ZOOM)) { break; }
    }
    const parts = [...slide.children].filter(c => c.tagName !== "ASIDE");
    for (let k = 0; k < 4 && slide.scrollHeight > limit; k++) {
      const factor = Math.max(MIN_SLIDE_ZOOM, (parts[0] ? zoomOf(parts[0]) : 1)
                              * limit / slide.scrollHeight);
      for (const p of parts) { p.style.zoom = factor; }
      if (factor <= MIN_SLIDE_ZOOM) { break; }
    }
    if (slide.scrollHeight > limit) { slide.classList.add("saliency-scroll"); }
  }

  root.classList.add("saliency-fitting");
  try {
    const todo = [...root.querySelectorAll(".slides section")]
      .filter(s => !s.querySelector("section"));
    while (todo.length) {
      const slide = todo.shift();
      fitWidth(slide);
      const cut = slide.scrollHeight > limit ? cutPoint(slide) : null;
      if (cut) {
        todo.unshift(splitBefore(slide, cut));
      } else if (slide.scrollHeight > limit) {
        scaleDown(slide);
      }
    }
  } catch (err) {
    console.error("saliency slides: could not fit the slides: " + err);
  } finally {
    root.classList.remove("saliency-fitting");
  }
  document.addEventListener("toggle", function (event) {
    const slide = event.target.closest && event.target.closest("section");
    if (slide) { slide.classList.toggle("saliency-scroll", slide.scrollHeight > config.height); }
  }, true);
  Reveal.sync();
  Reveal.layout();
  document.documentElement.dataset.saliencyFit = "done";
}
